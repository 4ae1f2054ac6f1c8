//! The rule-file loader on arbitrary text: problems as `file:line: reason`,
//! never a panic. The input is split at form feeds into up to 16 files (so
//! that lists, names and unreachable rules across files are exercised); a set
//! it accepts routes sample messages in every mailbox of the default
//! deployment to configured queues.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triaged::classify::{Classifier, complete};
use triaged::rules::RuleSet;
use triaged_fuzz::{ARRIVAL_MS, check_decision, check_problems, default_config, sample_messages};

fuzz_target!(
    init: triaged_fuzz::contain_parser_panics(),
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let files: Vec<(String, String)> = text
            .splitn(16, '\u{c}')
            .enumerate()
            .map(|(i, t)| (format!("{i:02}-fuzz.toml"), t.to_string()))
            .collect();
        let config = default_config();
        let set = match RuleSet::from_sources(&files, &config.known_names()) {
            Ok(s) => s,
            Err(p) => {
                let named: Vec<(&str, &str)> =
                    files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
                check_problems(&p, &named);
                return;
            }
        };
        for mb in &config.mailboxes {
            for msg in sample_messages() {
                let ev = set.evaluate(&mb.name, msg);
                let d = complete(&ev, msg, mb, ARRIVAL_MS, config);
                check_decision(&d, config, ARRIVAL_MS);
            }
        }
        let _ = Classifier::new(set);
    }
);
