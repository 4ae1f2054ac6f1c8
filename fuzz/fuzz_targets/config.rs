//! The configuration loader on arbitrary text: problems (with the file name
//! and a line inside the text), never a panic. A configuration it accepts is
//! usable: messages are classified in each of its mailboxes (queues, desks,
//! priority targets and calendars), with the shipped rules if they fit it,
//! else with none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triaged::classify::Classifier;
use triaged::config::Config;
use triaged::rules::RuleSet;
use triaged_fuzz::{
    ARRIVAL_MS, check_decision, check_problems, sample_messages, shipped_classifier,
};

fuzz_target!(
    init: triaged_fuzz::contain_parser_panics(),
    |data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let config = match Config::parse(&text, "fuzz.toml") {
            Ok(c) => c,
            Err(p) => {
                check_problems(&p.0, &[("fuzz.toml", &text)]);
                return;
            }
        };
        let _ = config.desk_tags();
        let _ = config.own_addresses();
        // The shipped rules name the example's queues; for a configuration
        // without them, an empty rule set still exercises the defaults,
        // priorities, targets and calendars.
        let classifier = match shipped_classifier(&config) {
            Ok(c) => c,
            Err(p) => {
                assert!(!p.0.is_empty(), "rules refused without a problem");
                match RuleSet::from_sources(&[], &config.known_names()) {
                    Ok(empty) => Classifier::new(empty),
                    Err(p) => panic!("an empty rule set is refused: {p:?}"),
                }
            }
        };
        for mb in config.mailboxes.iter().take(8) {
            for msg in sample_messages() {
                let d = classifier.classify(msg, mb, ARRIVAL_MS, &config);
                check_decision(&d, &config, ARRIVAL_MS);
            }
        }
    }
);
