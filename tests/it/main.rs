//! All integration tests, in one test binary (one link, shared harness).

mod harness;
mod hostile;
mod imap;
mod ingest;
mod outbound;
mod rules;
mod store;
