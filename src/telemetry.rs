//! Logging: readable lines by default, JSON lines for machines. `RUST_LOG`
//! filters (default `info`). Every line about a message carries its mailbox,
//! UID and Message-ID as fields.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber, writing to stderr. Calling it twice is harmless.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `RUST_LOG` (default `info`), with PostgreSQL's notices ("relation ...
/// already exists, skipping" at every migration check) at WARN unless
/// `RUST_LOG` says something of sqlx itself.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let given = rust_log.filter(|s| !s.trim().is_empty());
    let mut filter = given
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if !given.is_some_and(|s| s.contains("sqlx"))
        && let Ok(quiet) = "sqlx::postgres::notice=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    filter
}

/// Routes panics that the parser contains (malformed mail) to a warning line;
/// every other panic keeps the default report.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if crate::parse::in_contained_parser() {
            tracing::warn!(panic = %info, "mail parser failed on a malformed message; falling back");
        } else {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_notices_are_quiet_unless_asked_for() {
        for (given, shown) in [
            (None, "sqlx::postgres::notice=warn"),
            (Some("info"), "sqlx::postgres::notice=warn"),
            (Some("debug"), "sqlx::postgres::notice=warn"),
            (Some(""), "sqlx::postgres::notice=warn"),
        ] {
            let f = super::filter(given).to_string();
            assert!(f.contains(shown), "{given:?}: {f}");
        }
        let f = super::filter(Some("info,sqlx=debug")).to_string();
        assert!(!f.contains("notice"), "{f}");
    }
}
