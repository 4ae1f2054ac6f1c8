//! `triaged deliver`: the MTA's way in. Reads one message from stdin and
//! writes it durably into its mailbox's spool (a Maildir the daemon
//! ingests), loading neither the rules, the templates nor the store, so that
//! one process per message costs little. Exit codes are sysexits, as an MTA
//! reads them: 0 once the message is durable, 75 (`EX_TEMPFAIL`: the MTA
//! keeps it and retries) when it cannot be written or the configuration
//! does not say where, 65 (`EX_DATAERR`: the MTA bounces it, with our words)
//! for an empty message or one over `[ingest] max_message_bytes`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::sources::spool::{SpoolError, deliver as spool};

/// Temporary failure: the MTA retries later.
const EX_TEMPFAIL: u8 = 75;
/// The message itself is refused: the MTA bounces it.
const EX_DATAERR: u8 = 65;

pub(super) fn deliver(path: Option<&Path>, mailbox: Option<&str>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(p) => {
            eprintln!("triaged deliver: invalid configuration:\n{p}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let mailbox = match config.mailbox_or_first(mailbox) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("triaged deliver: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let Some(dir) = &mailbox.spool else {
        eprintln!(
            "triaged deliver: mailbox {:?} has no spool: set `spool = \"/var/spool/triaged/{}\"` in its [[mailboxes]] table in {}",
            mailbox.name, mailbox.name, config.source
        );
        return ExitCode::from(EX_TEMPFAIL);
    };
    let mut stdin = std::io::stdin().lock();
    match spool(dir, &mut stdin, config.ingest.max_message_bytes) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ (SpoolError::Empty | SpoolError::TooBig { .. })) => {
            eprintln!("triaged deliver: message refused: {e}");
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => {
            eprintln!("triaged deliver: cannot spool the message (the MTA should retry): {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}
