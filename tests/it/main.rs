//! All integration tests, in one test binary (one link, shared harness).

mod harness;
mod imap;
mod ingest;
mod outbound;
mod poison;
mod rules;
mod store;
