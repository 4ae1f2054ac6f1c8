//! All integration tests, in one test binary (one link, shared harness).

mod alerts;
mod conversation_threading;
mod correspondence;
mod durability;
mod harness;
mod history;
mod hostile;
mod identity;
mod imap;
mod ingest;
mod outbound;
mod outbox_claim;
mod poison;
mod rules;
mod sla;
mod steering;
mod store;
mod threading;
