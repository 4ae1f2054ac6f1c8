//! Sources: where raw messages come from. Each source hands raw bytes and an
//! [`Origin`](crate::pipeline::Origin) to the [`Pipeline`](crate::pipeline::Pipeline)
//! and acknowledges a message at its source only after its commit.

pub mod files;
pub mod imap;
pub mod spool;
