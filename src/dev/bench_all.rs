//! `triaged bench all`: every figure of issue 12 in one table, with the
//! machine's core count and load, so that runs compare side by side
//! (`benches/README.md` keeps the history). Each row reuses a `bench`
//! subcommand's code path; `--quick` runs smaller sizes.

use std::fmt::Write as _;
use std::path::Path;

use super::bench::{self, IngestRun};

/// Sizes of one run.
struct Sizes {
    ingest: usize,
    imap: usize,
    rules: usize,
    classify: usize,
    outbound: usize,
    pipe: usize,
}

const FULL: Sizes = Sizes {
    ingest: 10_000,
    imap: 10_000,
    rules: 1_000,
    classify: 200_000,
    outbound: 2_000,
    pipe: 500,
};

const QUICK: Sizes = Sizes {
    ingest: 2_000,
    imap: 2_000,
    rules: 1_000,
    classify: 20_000,
    outbound: 300,
    pipe: 50,
};

/// One row: the path measured, its size, the figure, CPU and memory.
struct Row {
    path: &'static str,
    size: String,
    result: String,
    detail: String,
}

pub async fn run(quick: bool, postgres_url: &str, append: Option<&Path>) -> anyhow::Result<()> {
    let sizes = if quick { &QUICK } else { &FULL };
    let load_before = load_average();
    let started = jiff::Zoned::now();
    let mut rows = Vec::new();

    let full = bench::bench_ingest(sizes.ingest, None, true).await?;
    rows.push(ingest_row("Maildir -> SQLite, full pipeline", &full, true));
    let quiet = bench::bench_ingest(sizes.ingest, None, false).await?;
    rows.push(ingest_row("the same with `--no-notify`", &quiet, false));
    rows.push(match fresh_postgres(postgres_url).await {
        Ok((url, drop)) => {
            let run = bench::bench_ingest(sizes.ingest, Some(&url), true).await;
            drop_postgres(postgres_url, &drop).await;
            ingest_row("Maildir -> PostgreSQL (local), full pipeline", &run?, false)
        }
        Err(e) => Row {
            path: "Maildir -> PostgreSQL (local), full pipeline",
            size: String::new(),
            result: "skipped".to_string(),
            detail: format!(
                "no PostgreSQL: {}",
                crate::config::redact_text(&e.to_string(), postgres_url)
            ),
        },
    });
    let (imap_rate, imap_cpu) = bench::bench_imap(sizes.imap).await?;
    rows.push(Row {
        path: "Dovecot IMAP -> SQLite backfill",
        size: format!("{} msgs", sizes.imap),
        result: format!("{imap_rate:.0} msg/s"),
        detail: format!("{imap_cpu:.2} s CPU (triaged)"),
    });
    for (name, n, engine, full) in bench::bench_classify(sizes.rules, sizes.classify)? {
        rows.push(Row {
            path: if name == "shipped" {
                "classify, shipped rules, one core"
            } else {
                "classify, generated rules, one core"
            },
            size: format!("{n} rules, {} msgs", sizes.classify),
            result: format!("{engine:.0} msg/s (rules)"),
            detail: format!("full decision {full:.0} msg/s"),
        });
    }
    let mails = bench::bench_outbound(sizes.outbound, 0).await?;
    rows.push(Row {
        path: "outbox -> local OpenSMTPD",
        size: format!("{} mails", sizes.outbound),
        result: format!("{mails:.0} mails/s"),
        detail: String::new(),
    });
    let pipe = bench::bench_pipe(sizes.pipe)?;
    rows.push(Row {
        path: "MTA pipe mode, one `triaged ingest -` per message",
        size: format!("{} msgs", pipe.count),
        result: format!("{:.1} msg/s", pipe.count as f64 / pipe.secs),
        detail: format!(
            "{:.1} ms CPU per message; start-up (`triaged check`) {:.1} ms CPU",
            pipe.cpu_ms_per_message, pipe.startup_cpu_ms
        ),
    });
    rows.push(Row {
        path: "MTA pipe mode, one `triaged deliver` per message (into the spool)",
        size: format!("{} msgs", pipe.count),
        result: format!("{:.1} msg/s", pipe.count as f64 / pipe.deliver_secs),
        detail: format!(
            "{:.2} ms CPU per message, all of it start-up (the daemon ingests the spool as a Maildir)",
            pipe.deliver_cpu_ms_per_message
        ),
    });
    rows.push(Row {
        path: "peak RSS over the SQLite ingest",
        size: format!("{} msgs", full.count),
        result: format!("{:.1} MiB", full.peak_rss_mib),
        detail: "VmHWM, reset before the run".to_string(),
    });
    rows.push(Row {
        path: "SQLite file after the ingest",
        size: format!(
            "{} msgs, {:.1} MiB of mail",
            full.count,
            full.mail_bytes as f64 / 1048576.0
        ),
        result: format!("{:.1} MiB", full.db_bytes as f64 / 1048576.0),
        detail: format!(
            "{:.2}x the mail",
            full.db_bytes as f64 / full.mail_bytes.max(1) as f64
        ),
    });

    let table = render(&rows, quick, &started, load_before, load_average());
    println!("\n{table}");
    if let Some(path) = append {
        use std::io::Write;
        // Made if missing: the runs are minutes of work, and the table is
        // printed above whatever happens here.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        writeln!(f, "\n{table}").map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        println!("appended to {}", path.display());
    }
    Ok(())
}

fn ingest_row(path: &'static str, run: &IngestRun, with_size: bool) -> Row {
    let per_core = run.count as f64 / run.cpu_secs.max(1e-9);
    Row {
        path,
        size: if with_size {
            format!(
                "{} msgs, {:.1} MiB",
                run.count,
                run.mail_bytes as f64 / 1048576.0
            )
        } else {
            format!("{} msgs", run.count)
        },
        result: format!("{:.0} msg/s", run.count as f64 / run.secs),
        detail: format!(
            "{:.0} us CPU per msg ({per_core:.0} msg per CPU-second); peak {:.1} MiB",
            run.cpu_secs * 1e6 / run.count as f64,
            run.peak_rss_mib
        ),
    }
}

fn render(
    rows: &[Row],
    quick: bool,
    started: &jiff::Zoned,
    before: String,
    after: String,
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### `triaged bench all{}` {}",
        if quick { " --quick" } else { "" },
        started.strftime("%Y-%m-%d %H:%M %Z")
    );
    let _ = writeln!(
        out,
        "\n{cores} cores; load average {before} before, {after} after; {} build.\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let _ = writeln!(out, "| path | size | result | CPU, memory, notes |");
    let _ = writeln!(out, "|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.path, r.size, r.result, r.detail
        );
    }
    out
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// A fresh database on the server of `admin_url`: its URL and name.
async fn fresh_postgres(admin_url: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let name = format!("triaged_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_postgres(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}
