//! triaged: an email-driven ticket triage daemon.
//!
//! # Layout
//!
//! Messages flow one way: **sources -> parse -> classify -> thread -> store**
//! (-> notify, to come).
//!
//! - [`sources`]: where raw messages come from: IMAP watchers ([`sources::imap`])
//!   and files, Maildirs, mbox and stdin ([`sources::files`]).
//! - [`parse`]: raw bytes to a [`parse::ParsedMessage`]. Pure, never fails.
//! - [`classify`]: desk, queue and kind, with the reasons. Pure.
//! - [`thread`]: the case tag and references that tie a reply to a ticket. Pure.
//! - [`store`]: the only module that speaks SQL (SQLite or PostgreSQL).
//! - [`pipeline`]: wires parse, classify and thread into one `prepare`, and
//!   commits batches; used by the daemon and by `triaged ingest` alike.
//! - [`report`]: the service report card (`triaged report`): figures per
//!   queue, priority and day from the store's counts. Pure.
//! - [`sla`]: the SLA clock: warnings, escalations, on-call pages and the
//!   daily status of urgent tickets, each sent once (a scheduler task of the
//!   daemon over a deadline index).
//! - [`daemon`]: the running service: watchers, scheduler, shutdown.
//! - [`ingest`]: the file-ingest engine behind `triaged ingest` and the benchmark.
//! - [`config`], [`telemetry`], [`cli`]: configuration, logs, command line.
//! - [`metrics`] (the Prometheus registry and each mailbox session's state,
//!   reported to by every layer) and [`http`] (`/metrics`, `/healthz`,
//!   `/readyz`, started by the daemon).
//! - Shared leaves every layer may use: [`problem`] (`file:line: reason`),
//!   [`clock`] (the one clock, injectable for tests), [`text`] (truncation),
//!   and [`automated`] (is this mail machine-sent?, over a parsed message;
//!   used by the rules and by notify's no-reply policy).
//! - [`authres`] (is the sender authenticated? `Authentication-Results`) and
//!   [`commands`] (command lines of a team member's reply, and who may give
//!   them): pure, for commands by mail.
//! - [`dev`] (cargo feature `dev`, on by default): tooling apart from the
//!   product: a private Dovecot on loopback ([`dev::devstack`]), and the demo
//!   and benchmarks built on it. Only [`cli`] imports it.
//!
//! # Imports
//!
//! A module imports only modules of lower layers (lowest first): foundations
//! ([`problem`], [`clock`], [`text`], [`priority`], [`calendar`]); [`parse`];
//! [`thread`], [`telemetry`], [`metrics`], [`automated`], [`reply`]; [`authres`];
//! [`commands`]; [`rules`]; [`config`];
//! [`classify`]; [`store`]; [`notify`]; [`report`]; [`sla`]; [`pipeline`]; [`sources`];
//! [`ingest`]; [`http`]; [`daemon`]; [`rules_cmd`]; `dev`; [`cli`]. `tests/tidy.rs`
//! holds the table and fails on any other import.

pub mod authres;
pub mod automated;
pub mod calendar;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
#[cfg(feature = "dev")]
pub mod dev;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod pipeline;
pub mod priority;
pub mod problem;
pub mod reply;
pub mod report;
pub mod rules;
pub mod rules_cmd;
pub mod sla;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod thread;
