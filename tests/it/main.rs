//! All integration tests, in one test binary (one link, shared harness).

mod admin;
mod alerts;
mod check;
mod conversation_threading;
mod correspondence;
mod durability;
mod fleet;
mod harness;
mod history;
mod hostile;
mod identity;
mod imap;
mod ingest;
mod metrics;
mod operator;
mod outbound;
mod outbox_claim;
mod poison;
mod reload;
mod report;
mod rules;
mod sla;
mod steering;
mod store;
mod threading;
