//! `triaged check`: the configuration, the passwords' sources, the spools
//! `triaged deliver` writes to, the routing rules and the templates, every
//! problem as `file:line: reason`; with
//! `--connect`, a login to every mailbox and the SMTP server, each reported
//! (ok, or the server's words) without touching mail. `--json` for tools
//! (the shape is in docs/json.md).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, ImapSettings, Mailbox, SmtpConfig};
use crate::problem::Problem;

/// How long one connection check may take in all (connect, TLS, login).
const PROBE_DEADLINE: Duration = Duration::from_secs(30);

/// One server `check --connect` talked to.
#[derive(Debug, Serialize)]
pub struct Probe {
    /// `imap` or `smtp`.
    pub kind: &'static str,
    /// The mailbox's name; `smtp` for the SMTP server.
    pub name: String,
    /// `host:port`.
    pub server: String,
    pub ok: bool,
    /// What the server said: the folder's size, or why it failed.
    pub detail: String,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    config: &'a str,
    ok: bool,
    problems: Vec<JsonProblem<'a>>,
    connections: &'a [Probe],
}

#[derive(Debug, Serialize)]
struct JsonProblem<'a> {
    file: &'a str,
    line: usize,
    reason: &'a str,
}

/// Runs `triaged check`.
pub(super) async fn check(
    path: Option<&Path>,
    connect: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let owned = path.map(Path::to_path_buf);
    let loaded = crate::daemon::off_runtime(move || {
        Config::load(owned.as_deref()).map(|config| {
            let problems = offline_problems(&config);
            (config, problems)
        })
    })
    .await?;
    let (config, problems) = match loaded {
        Ok(found) => found,
        Err(problems) => {
            let source = path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".to_string());
            print_report(&source, &problems.0, &[], json)?;
            return Ok(ExitCode::from(1));
        }
    };
    let probes = if connect {
        probe_all(&config).await
    } else {
        Vec::new()
    };
    let ok = print_report(&config.source, &problems, &probes, json)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every problem found without talking to a server.
fn offline_problems(config: &Config) -> Vec<Problem> {
    let mut problems = config.check_secrets();
    problems.extend(config.check_spools());
    problems.extend(config.check_database_url());
    if let Err(p) = crate::classify::load_rules(config) {
        problems.extend(p.0);
    }
    match crate::notify::templates::Templates::load_or_builtin(&config.paths.templates) {
        Ok(t) => problems.extend(crate::notify::check_templates(config, &t)),
        Err(p) => problems.extend(p),
    }
    problems
}

/// Prints the report; returns whether all is well.
fn print_report(
    source: &str,
    problems: &[Problem],
    probes: &[Probe],
    json: bool,
) -> anyhow::Result<bool> {
    let ok = problems.is_empty() && probes.iter().all(|p| p.ok);
    let mut out = std::io::stdout().lock();
    if json {
        let report = Report {
            config: source,
            ok,
            problems: problems
                .iter()
                .map(|p| JsonProblem {
                    file: &p.file,
                    line: p.line,
                    reason: &p.reason,
                })
                .collect(),
            connections: probes,
        };
        writeln!(out, "{}", super::json_visible(&report)?)?;
        return Ok(ok);
    }
    for p in problems {
        writeln!(out, "{}", super::visible(&p.to_string(), false))?;
    }
    for p in probes {
        let verdict = if p.ok { "ok" } else { "FAILED" };
        writeln!(
            out,
            "{} {} ({}): {verdict}: {}",
            p.kind,
            super::visible(&p.name, false),
            super::visible(&p.server, false),
            super::visible(&p.detail, false)
        )?;
    }
    if ok {
        writeln!(out, "{}: ok", super::visible(source, false))?;
    }
    Ok(ok)
}

/// Logs in to every watched mailbox and the SMTP server, all at once.
async fn probe_all(config: &Config) -> Vec<Probe> {
    let imap = config
        .mailboxes
        .iter()
        .filter_map(|m| m.imap.as_ref().map(|s| probe_imap(m, s)));
    let mut probes = futures::future::join_all(imap).await;
    if let Some(smtp) = &config.smtp {
        probes.push(probe_smtp(smtp).await);
    }
    probes
}

/// Connects, logs in and looks at (EXAMINE: read-only) the mailbox's folder.
async fn probe_imap(m: &Mailbox, s: &ImapSettings) -> Probe {
    let mut probe = Probe {
        kind: "imap",
        name: m.name.clone(),
        server: format!("{}:{}", s.host, s.port),
        ok: false,
        detail: String::new(),
    };
    let password = match s.password() {
        Ok(p) => p,
        Err(e) => {
            probe.detail = format!("not tried: {e}");
            return probe;
        }
    };
    let attempt = async {
        let mut session = crate::sources::imap::connect(s, &password)
            .await
            .map_err(|e| e.to_string())?;
        let examined = session.examine(&s.folder).await;
        let _ = session.logout().await;
        let folder = examined.map_err(|e| {
            format!(
                "logged in as {}, but folder {:?}: {e}",
                s.username, s.folder
            )
        })?;
        Ok::<_, String>(format!(
            "logged in as {}; folder {:?} has {} messages",
            s.username, s.folder, folder.exists
        ))
    };
    match tokio::time::timeout(PROBE_DEADLINE, attempt).await {
        Ok(Ok(detail)) => {
            probe.ok = true;
            probe.detail = detail;
        }
        Ok(Err(e)) => probe.detail = e,
        Err(_) => probe.detail = format!("no answer within {PROBE_DEADLINE:?}"),
    }
    probe
}

/// Connects, says EHLO, starts TLS and logs in as the sender would, then
/// NOOP. No mail is sent.
async fn probe_smtp(smtp: &SmtpConfig) -> Probe {
    let mut probe = Probe {
        kind: "smtp",
        name: "smtp".to_string(),
        server: format!("{}:{}", smtp.host, smtp.port()),
        ok: false,
        detail: String::new(),
    };
    let transport = match crate::notify::sender::transport(smtp) {
        Ok(t) => t,
        Err(e) => {
            probe.detail = format!("not tried: {e}");
            return probe;
        }
    };
    match tokio::time::timeout(PROBE_DEADLINE, transport.test_connection()).await {
        Ok(Ok(true)) => {
            probe.ok = true;
            probe.detail = match &smtp.username {
                Some(u) => format!("connected ({:?}), logged in as {u}", smtp.security),
                None => format!("connected ({:?})", smtp.security),
            };
        }
        Ok(Ok(false)) => probe.detail = "connected, but the server did not answer NOOP".to_string(),
        Ok(Err(e)) => probe.detail = crate::text::truncate(&e.to_string(), 400),
        Err(_) => probe.detail = format!("no answer within {PROBE_DEADLINE:?}"),
    }
    probe
}
