//! `triaged bench`: throughput and memory figures, printed, never asserted.
//!
//! - `bench ingest`: N generated messages (a few KB, every tenth with an
//!   attachment) from a Maildir into a fresh SQLite (or `--database-url`).
//! - `bench imap`: the same messages appended to a private Dovecot, taken by the
//!   daemon's IMAP watcher until every one is a ticket.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULT_CONFIG};
use crate::pipeline::Pipeline;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Maildir -> store throughput, with peak memory, for each count given.
    Ingest {
        /// Message counts to run, one fresh database each.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        counts: Vec<usize>,
        /// Database URL (default: a fresh SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// IMAP (private Dovecot) -> store throughput, with peak memory.
    Imap {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
}

pub async fn run(command: BenchCommand, _config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Ingest {
            counts,
            database_url,
        } => {
            for count in counts {
                bench_ingest(count, database_url.as_deref()).await?;
            }
        }
        BenchCommand::Imap { count } => bench_imap(count).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Peak resident memory of this process so far, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    rss_field("VmHWM:")
}

/// Current resident memory of this process, in MiB (VmRSS).
pub fn rss_mib() -> f64 {
    rss_field("VmRSS:")
}

fn rss_field(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

const WORDS: &[&str] = &[
    "portal", "login", "timeout", "database", "report", "deploy", "server", "queue", "students",
    "grades", "payment", "cannot", "error", "slow", "upload", "account", "campus", "network",
];

/// A generated customer message, about 2-4 KB; every tenth carries a 6 KB attachment.
pub fn generate(i: usize) -> Vec<u8> {
    let w = |k: usize| WORDS[(i.wrapping_mul(7) + k * 13) % WORDS.len()];
    let mut body = String::new();
    for line in 0..30 + i % 20 {
        body.push_str(&format!(
            "Line {line}: the {} {} shows {} for {} users since {}:{:02}.\r\n",
            w(line),
            w(line + 1),
            w(line + 2),
            i % 97,
            8 + line % 9,
            i % 60
        ));
    }
    let from = format!("user{}@dept{}.example.org", i % 500, i % 17);
    let head = format!(
        "From: User {i} <{from}>\r\nTo: isda-support@example.edu\r\nSubject: {} {} problem #{i}\r\n\
         Date: Sat, 21 Nov 2026 10:{:02}:00 -0600\r\nMessage-ID: <bench-{i}@example.org>\r\nMIME-Version: 1.0\r\n",
        w(0),
        w(1),
        i % 60
    );
    if i.is_multiple_of(10) {
        // 6 KB of base64 in 76-column lines.
        let attachment =
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
                .repeat(6 * 1024 / 76);
        format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
             --b{i}\r\nContent-Type: application/octet-stream; name=\"log{i}.bin\"\r\nContent-Disposition: attachment; filename=\"log{i}.bin\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{attachment}--b{i}--\r\n"
        )
        .into_bytes()
    } else {
        format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").into_bytes()
    }
}

fn bench_config(database_url: String) -> anyhow::Result<Arc<Config>> {
    let mut config =
        Config::parse(DEFAULT_CONFIG, "built-in").map_err(|p| anyhow::anyhow!("{p}"))?;
    config.store.database_url = database_url;
    Ok(Arc::new(config))
}

async fn bench_ingest(count: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let maildir = dir.path().join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(d))?;
    }
    let mut bytes = 0usize;
    for i in 0..count {
        let m = generate(i);
        bytes += m.len();
        std::fs::write(maildir.join("new").join(format!("{i:08}.bench")), m)?;
    }
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let config = bench_config(url.clone())?;
    let store = Store::open(&url, 1).await?;
    let pipeline = Pipeline::new(config, store.clone());
    let rss_before = rss_mib();
    let start = Instant::now();
    let summary =
        crate::ingest::ingest_paths(&pipeline, "isda-support", vec![maildir], |_| {}).await;
    let secs = start.elapsed().as_secs_f64();
    let tickets = store.count_tickets().await?;
    store.close().await;
    println!(
        "bench ingest: {count} messages ({:.1} MiB) Maildir -> {} in {secs:.2} s = {:.0} msg/s; {tickets} tickets; {summary}; \
         RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB",
        bytes as f64 / 1048576.0,
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        count as f64 / secs,
        rss_before,
        rss_mib(),
        peak_rss_mib()
    );
    Ok(())
}

async fn bench_imap(count: usize) -> anyhow::Result<()> {
    let dovecot = crate::devstack::Dovecot::start()?;
    let messages: Vec<Vec<u8>> = (0..count).map(generate).collect();
    let t = Instant::now();
    dovecot.deliver_files("isda-support@example.edu", &messages)?;
    println!(
        "bench imap: delivered {count} messages into Dovecot's Maildir in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    drop(messages);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    // The password goes through a file, as a deployment's would.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, crate::devstack::PASSWORD)?;
    let text = format!(
        "[store]\ndatabase_url = \"{url}\"\n[[desks]]\nname = \"isda\"\ntag = \"ISDA\"\n[[queues]]\nname = \"Customer-Support\"\ndesk = \"isda\"\n\
         [[mailboxes]]\nname = \"isda-support\"\naddress = \"isda-support@example.edu\"\ndesk = \"isda\"\ndefault_queue = \"Customer-Support\"\n\
         [mailboxes.imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nusername = \"isda-support@example.edu\"\npassword_file = \"{}\"\n",
        dovecot.imap_port,
        pw.display()
    );
    let config = Arc::new(Config::parse(&text, "bench").map_err(|p| anyhow::anyhow!("{p}"))?);
    let store = Store::open(&url, 1).await?;
    let shutdown = CancellationToken::new();
    let rss_before = rss_mib();
    let start = Instant::now();
    let daemon = tokio::spawn(crate::daemon::run(config, store.clone(), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = store.count_tickets().await?;
        if n as usize >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let tickets = store.count_tickets().await?;
    shutdown.cancel();
    daemon.await??;
    println!(
        "bench imap: {tickets} of {count} messages IMAP -> SQLite in {secs:.2} s = {:.0} msg/s; RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB",
        tickets as f64 / secs,
        rss_before,
        rss_mib(),
        peak_rss_mib()
    );
    Ok(())
}
