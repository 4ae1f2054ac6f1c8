//! `Pipeline::prepare` on arbitrary messages, in every configured mailbox and
//! one that is not configured, with the default size limit and with a small
//! one (the oversized path). `prepare` is pure: the store behind the pipeline
//! is an in-memory SQLite database that is never touched.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use triaged::pipeline::{Action, Origin, Pipeline};
use triaged::store::Store;

const SMALL_LIMIT: u64 = 2048;

fn pipelines() -> &'static [Pipeline; 2] {
    // The runtime stays beside the pipelines: the pool's connection lives on it.
    static P: OnceLock<(tokio::runtime::Runtime, [Pipeline; 2])> = OnceLock::new();
    &P.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let store = match rt.block_on(Store::open("sqlite::memory:", 1000)) {
            Ok(s) => s,
            Err(e) => panic!("in-memory store: {e}"),
        };
        let config = triaged_fuzz::default_config().clone();
        let mut small = config.clone();
        small.ingest.max_message_bytes = SMALL_LIMIT;
        let make = |c: triaged::config::Config| match triaged_fuzz::shipped_classifier(&c) {
            Ok(cl) => Pipeline::with_classifier(Arc::new(c), store.clone(), cl),
            Err(p) => panic!("{p}"),
        };
        let pipelines = [make(config), make(small)];
        (rt, pipelines)
    })
    .1
}

fuzz_target!(
    init: {
        triaged_fuzz::contain_parser_panics();
        pipelines();
    },
    |data: &[u8]| {
        for pipeline in pipelines() {
            let config = pipeline.config();
            let limit = config.ingest.max_message_bytes;
            let names = config
                .mailboxes
                .iter()
                .map(|m| m.name.as_str())
                .chain(["not-configured"]);
            for name in names {
                let origin = Origin::Stdin { index: 0 };
                let p = pipeline.prepare(name, origin, data.to_vec());
                assert!(
                    p.dedupe_key.starts_with("mid:") || p.dedupe_key.starts_with("sha256:"),
                    "dedupe key {:?}",
                    p.dedupe_key
                );
                match &p.action {
                    Action::Ticket { decision, parsed, .. } => {
                        assert!(config.mailbox(name).is_some(), "a ticket in {name}");
                        assert!(
                            triaged::parse::not_mail_reason(data).is_none(),
                            "a ticket of something that is not mail"
                        );
                        assert!(data.len() as u64 <= limit, "an oversized message became a ticket");
                        // The one copy it holds, its compressed bytes, is the message.
                        let raw = p
                            .raw()
                            .expect("a message made a ticket of holds its bytes")
                            .expect("its own encoding decodes");
                        assert_eq!(raw, data, "raw bytes changed");
                        triaged_fuzz::check_parsed(parsed, data);
                        // prepare stamps the arrival with the clock: only the
                        // configured names are checked here.
                        triaged_fuzz::check_decision(decision, config, i64::MIN);
                    }
                    Action::Quarantine { size, headers, .. } => {
                        assert_eq!(*size, data.len() as u64, "quarantined size");
                        assert!(
                            config.mailbox(name).is_none()
                                || data.len() as u64 > limit
                                || triaged::parse::not_mail_reason(data).is_some(),
                            "quarantined a message that fits in a configured mailbox"
                        );
                        assert!(data.starts_with(headers), "quarantined head is not the message's head");
                    }
                }
            }
        }
    }
);
