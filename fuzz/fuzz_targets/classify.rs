//! The rule engine on arbitrary messages: parse, classify with the shipped
//! rules and the default deployment in every configured mailbox, thread keys
//! and dedupe key (what `Pipeline::prepare` does, without a store).
#![no_main]

use libfuzzer_sys::fuzz_target;
use triaged::pipeline::dedupe_key;
use triaged_fuzz::{ARRIVAL_MS, check_decision, default_classifier, default_config};

fuzz_target!(
    init: {
        triaged_fuzz::contain_parser_panics();
        default_classifier();
    },
    |data: &[u8]| {
        let config = default_config();
        let classifier = default_classifier();
        let p = triaged::parse::parse(data);
        // Arrival at a fixed time, and at the time the message claims (any
        // date mail-parser reads, so the calendars see extreme instants).
        let mut arrivals = vec![ARRIVAL_MS];
        if let Some(ms) = p.date.and_then(|s| s.checked_mul(1000)) {
            arrivals.push(ms);
        }
        for mb in &config.mailboxes {
            for &arrival in &arrivals {
                let d = classifier.classify(&p, mb, arrival, config);
                check_decision(&d, config, arrival);
            }
        }
        let _ = triaged::thread::keys(&p, &config.desk_tags());
        let key = dedupe_key(&p, data);
        assert!(
            key.starts_with("mid:") || key.starts_with("sha256:"),
            "dedupe key {key:?}"
        );
    }
);
