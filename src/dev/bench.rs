//! `triaged bench`: throughput and memory figures, printed, never asserted.
//!
//! - `bench ingest`: N generated messages (a few KB, every tenth with an
//!   attachment) from a Maildir into a fresh SQLite (or `--database-url`).
//! - `bench imap`: the same messages appended to a private Dovecot, taken by the
//!   daemon's IMAP watcher until every one is a ticket.
//! - `bench sla`: the SLA scheduler's ticks over 100,000 open tickets.

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
        /// Queue no mail (as `triaged ingest --no-notify`).
        #[arg(long)]
        no_notify: bool,
    },
    /// IMAP (private Dovecot) -> store throughput, with peak memory.
    Imap {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    /// Classification of parsed messages in memory, one core: the shipped rules
    /// and a generated rule set, with load times.
    Classify {
        /// Size of the generated rule set.
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// Messages classified per measurement.
        #[arg(long, default_value_t = 200_000)]
        count: usize,
    },
    /// The SLA scheduler over N open tickets: the catch-up pass over new
    /// tickets, an idle tick (nothing due), and ticks that send warnings and
    /// escalations; time per tick and memory. SQLite, or `--database-url`.
    Sla {
        #[arg(long, default_value_t = 100_000)]
        tickets: usize,
        /// Database URL (default: a fresh SQLite file in a temporary folder).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Acknowledgements through the outbox to a private OpenSMTPD: mails per
    /// second, then the latency from a message landing in the watched mailbox
    /// to its acknowledgement landing in the customer's (IDLE).
    Outbound {
        #[arg(long, default_value_t = 2_000)]
        count: usize,
        /// Messages timed one after another for the latency figures.
        #[arg(long, default_value_t = 50)]
        latency_samples: usize,
    },
    /// MTA pipe mode: one `triaged ingest -` process per message, as an MTA
    /// alias runs it; messages per second and CPU per message.
    Pipe {
        #[arg(long, default_value_t = 500)]
        count: usize,
    },
    /// Every figure of issue 12 in one table, with the machine's core count
    /// and load.
    All {
        /// Smaller sizes, for iterating (about a minute).
        #[arg(long)]
        quick: bool,
        /// PostgreSQL server for the PostgreSQL row (a fresh database is made
        /// and dropped); the row is skipped when it cannot be reached.
        #[arg(
            long,
            env = "TRIAGED_TEST_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/test"
        )]
        postgres_url: String,
        /// Append the table to this file (benches/README.md keeps the history).
        #[arg(long)]
        append: Option<std::path::PathBuf>,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Ingest {
            counts,
            database_url,
            no_notify,
        } => {
            for count in counts {
                bench_ingest(count, database_url.as_deref(), !no_notify).await?;
            }
        }
        BenchCommand::Imap { count } => {
            bench_imap(count).await?;
        }
        BenchCommand::Classify { rules, count } => {
            bench_classify(rules, count)?;
        }
        BenchCommand::Sla {
            tickets,
            database_url,
        } => bench_sla(tickets, database_url.as_deref()).await?,
        BenchCommand::Outbound {
            count,
            latency_samples,
        } => {
            bench_outbound(count, latency_samples).await?;
        }
        BenchCommand::Pipe { count } => {
            bench_pipe(count)?;
        }
        BenchCommand::All {
            quick,
            postgres_url,
            append,
        } => super::bench_all::run(quick, &postgres_url, append.as_deref()).await?,
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

/// CPU time (user + system) of this process and of its waited-for children,
/// in seconds (`/proc/self/stat`, clock ticks of 1/100 s).
pub fn cpu_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        })
        .unwrap_or_default();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    // utime, stime, cutime, cstime are fields 14-17; 3 is the first here.
    (at(11) + at(12), at(13) + at(14))
}

/// Starts a new peak (VmHWM) for the next measurement.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const WORDS: &[&str] = &[
    "portal", "login", "timeout", "database", "report", "deploy", "server", "queue", "students",
    "grades", "payment", "cannot", "error", "slow", "upload", "account", "campus", "network",
];

/// `x` scrambled (SplitMix64's finaliser): a different, unordered value for
/// each `x`, the same on every run.
fn scramble(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
    // Message-IDs as mail programs make them: unrelated from one message
    // to the next (a random part first), so that the store's indexes of
    // them take each key at a random place, as with real mail (sequential
    // IDs would make them appends).
    let head = format!(
        "From: User {i} <{from}>\r\nTo: isda-support@example.edu\r\nSubject: {} {} problem #{i}\r\n\
         Date: Sat, 21 Nov 2026 10:{:02}:00 -0600\r\nMessage-ID: <{:016x}.{i}@mail.example.org>\r\nMIME-Version: 1.0\r\n",
        w(0),
        w(1),
        i % 60,
        scramble(i as u64)
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

/// The example deployment on a private mail stack: isda-support watched on
/// `dovecot`, mail sent through OpenSMTPD on `smtp_port`, no per-sender limit.
fn daemon_config(
    url: &str,
    dovecot: &super::devstack::Dovecot,
    password_file: &Path,
    smtp_port: Option<u16>,
) -> anyhow::Result<Arc<Config>> {
    let mut c = Config::parse(DEFAULT_CONFIG, "built-in").map_err(|p| anyhow::anyhow!("{p}"))?;
    c.store.database_url = url.to_string();
    let mut imap = dovecot.imap_settings("isda-support@example.edu", "INBOX", "");
    imap.password_env = None;
    imap.password_file = Some(password_file.to_path_buf());
    for m in &mut c.mailboxes {
        m.imap = (m.name == "isda-support").then(|| imap.clone());
    }
    c.smtp = smtp_port.map(|port| crate::config::SmtpConfig {
        host: "127.0.0.1".to_string(),
        port: Some(port),
        security: crate::config::Security::Plain,
        username: None,
        password_env: None,
        password_file: None,
        ca_file: None,
        timeout_secs: 30,
        retry_initial_secs: 1,
        retry_max_secs: 10,
        give_up_after_secs: 3600,
        concurrency: 16,
    });
    c.notify.ack_limit_per_hour = i64::MAX;
    c.notify.notify_limit_per_sender_per_hour = i64::MAX;
    c.notify.notify_limit_per_alert_per_hour = i64::MAX;
    Ok(Arc::new(c))
}

fn bench_config(database_url: String) -> anyhow::Result<Arc<Config>> {
    let mut config =
        Config::parse(DEFAULT_CONFIG, "built-in").map_err(|p| anyhow::anyhow!("{p}"))?;
    config.store.database_url = database_url;
    config.notify.ack_limit_per_hour = i64::MAX;
    config.notify.notify_limit_per_sender_per_hour = i64::MAX;
    config.notify.notify_limit_per_alert_per_hour = i64::MAX;
    Ok(Arc::new(config))
}

/// What one `bench ingest` run measured.
pub struct IngestRun {
    pub count: usize,
    pub mail_bytes: usize,
    pub secs: f64,
    pub cpu_secs: f64,
    pub peak_rss_mib: f64,
    /// The SQLite file with its WAL after the run (0 for PostgreSQL).
    pub db_bytes: u64,
}

/// Writes `count` generated messages into a Maildir under `dir`; their size.
pub fn write_maildir(dir: &Path, count: usize) -> anyhow::Result<(std::path::PathBuf, usize)> {
    let maildir = dir.join("Maildir");
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(d))?;
    }
    let mut bytes = 0usize;
    for i in 0..count {
        let m = generate(i);
        bytes += m.len();
        std::fs::write(maildir.join("new").join(format!("{i:08}.bench")), m)?;
    }
    Ok((maildir, bytes))
}

pub async fn bench_ingest(
    count: usize,
    database_url: Option<&str>,
    notify: bool,
) -> anyhow::Result<IngestRun> {
    let dir = tempfile::tempdir()?;
    let (maildir, bytes) = write_maildir(dir.path(), count)?;
    let db_path = dir.path().join("bench.db");
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", db_path.display()));
    let config = bench_config(url.clone())?;
    // The same work as `triaged ingest`: acknowledgements are composed and queued.
    let store = Store::open(&url, 1).await?;
    let pipeline =
        Pipeline::new(config.clone(), store.clone()).map_err(|p| anyhow::anyhow!("{p}"))?;
    let pipeline = if notify {
        let notifier = crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("{p}"))?;
        pipeline.with_notifier(notifier, Arc::new(tokio::sync::Notify::new()))
    } else {
        pipeline
    };
    reset_peak_rss();
    let rss_before = rss_mib();
    let cpu_before = cpu_secs().0;
    let start = Instant::now();
    let summary =
        crate::ingest::ingest_paths(&pipeline, "isda-support", vec![maildir], |_| {}).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs().0 - cpu_before;
    let peak = peak_rss_mib();
    let tickets = store.count_tickets().await?;
    // The WAL checkpointed before the file is measured: closing does it
    // too, but the pool may close after the size is read.
    store.checkpoint().await?;
    store.close().await;
    if std::env::var_os("TRIAGED_BENCH_KEEP").is_some() {
        // For inspecting the store afterwards (sqlite3's dbstat).
        println!("bench ingest: kept {}", dir.keep().display());
    }
    let db_bytes = if database_url.is_none() {
        ["", "-wal"]
            .iter()
            .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db_path.display())).ok())
            .map(|m| m.len())
            .sum()
    } else {
        0
    };
    println!(
        "bench ingest: {count} messages ({:.1} MiB) Maildir -> {} in {secs:.2} s = {:.0} msg/s ({cpu:.2} s CPU, {:.0} us per message){}; \
         {tickets} tickets; {summary}; RSS {:.1} MiB before, {:.1} MiB after, peak {peak:.1} MiB{}",
        bytes as f64 / 1048576.0,
        if url.starts_with("sqlite") {
            "SQLite"
        } else {
            "PostgreSQL"
        },
        count as f64 / secs,
        cpu * 1e6 / count as f64,
        if notify { "" } else { ", no mail" },
        rss_before,
        rss_mib(),
        if db_bytes > 0 {
            format!("; database {:.1} MiB", db_bytes as f64 / 1048576.0)
        } else {
            String::new()
        }
    );
    Ok(IngestRun {
        count,
        mail_bytes: bytes,
        secs,
        cpu_secs: cpu,
        peak_rss_mib: peak,
        db_bytes,
    })
}

async fn bench_sla(count: usize, database_url: Option<&str>) -> anyhow::Result<()> {
    use crate::clock::{ManualClock, SharedClock};
    let dir = tempfile::tempdir()?;
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("sla.db").display()));
    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let config = bench_config(url.clone())?;
    let store = Store::open(&url, 1).await?;
    let classifier =
        crate::classify::Classifier::load(&config).map_err(|p| anyhow::anyhow!("{p}"))?;
    // Monday 2026-11-16 10:00 in Chicago: every ticket arrives then, with a
    // response due from one to ten business hours later (spread evenly).
    let arrival: i64 = 1_794_844_800_000;
    let raw = generate(0);
    let parsed = crate::parse::parse(&raw);
    let mailbox = config
        .mailbox("isda-support")
        .ok_or_else(|| anyhow::anyhow!("no isda-support mailbox"))?;
    let mut decision = classifier.classify(&parsed, mailbox, arrival, &config);
    let cal = config
        .calendars
        .get(&decision.desk)
        .ok_or_else(|| anyhow::anyhow!("no calendar"))?
        .clone();
    let rss_before = rss_mib();
    let start = Instant::now();
    let mut made = 0;
    while made < count {
        let mut tx = store.begin_at(arrival).await?;
        for _ in 0..5_000.min(count - made) {
            let minutes = 60 + (made % 540) as u64;
            decision.due_ms = Some(
                cal.due(
                    jiff::Timestamp::from_millisecond(arrival)?,
                    Duration::from_secs(minutes * 60),
                )?
                .as_millisecond(),
            );
            tx.create_ticket(&parsed, &decision, "isda-support").await?;
            made += 1;
        }
        tx.commit().await?;
    }
    println!(
        "bench sla ({backend}): {count} open tickets made in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let clock = ManualClock::at(arrival);
    let scheduler = crate::sla::Scheduler {
        config: config.clone(),
        store: store.clone(),
        notifier: crate::sla::fixed(
            crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("{p}"))?,
        ),
        clock: Arc::new(clock.clone()) as SharedClock,
        wake: Arc::new(tokio::sync::Notify::new()),
        leader: None,
    };
    // 1. Every ticket is new: the catch-up pass looks at each once.
    let start = Instant::now();
    let mut ticks = 0;
    let mut looked = 0;
    loop {
        let r = scheduler.tick().await?;
        ticks += 1;
        looked += r.tickets;
        if r.tickets == 0 {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  catch-up: {looked} tickets looked at in {ticks} ticks, {secs:.1} s ({:.0} tickets/s)",
        looked as f64 / secs
    );
    // 2. Idle ticks: nothing due (an index probe, no scan).
    let mut times = Vec::new();
    for i in 0..50 {
        clock.set(arrival + 1_000 * i);
        let start = Instant::now();
        let r = scheduler.tick().await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            r.tickets == 0,
            "an idle tick looked at {} tickets",
            r.tickets
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  idle tick: median {:.2} ms, max {:.2} ms over {} ticks",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
    // 3. Ticks every 30 s of the first business hour after the first
    // warnings: each sends the warnings (and escalations) due since the last.
    let first_warning = cal
        .due(
            jiff::Timestamp::from_millisecond(arrival)?,
            Duration::from_secs(45 * 60),
        )?
        .as_millisecond();
    let mut busy = Vec::new();
    let (mut sent, mut mails) = (0, 0);
    for i in 0..120 {
        clock.set(first_warning + 30_000 * i);
        let start = Instant::now();
        let r = scheduler.tick().await?;
        busy.push((start.elapsed().as_secs_f64() * 1000.0, r.tickets));
        sent += r.levels;
        mails += r.mails;
    }
    let total: f64 = busy.iter().map(|b| b.0).sum();
    let looked: usize = busy.iter().map(|b| b.1).sum();
    let worst = busy.iter().map(|b| b.0).fold(0.0, f64::max);
    println!(
        "  busy ticks (one hour of 30 s ticks): {} ticks, {looked} tickets looked at, {sent} levels, {mails} mails queued; \
         {:.1} ms per tick on average, worst {worst:.1} ms; {:.2} ms per ticket looked at",
        busy.len(),
        total / busy.len() as f64,
        total / looked.max(1) as f64
    );
    println!(
        "  RSS {:.1} MiB before the tickets, {:.1} MiB after, peak {:.1} MiB",
        rss_before,
        rss_mib(),
        peak_rss_mib()
    );
    store.close().await;
    Ok(())
}

pub async fn bench_imap(count: usize) -> anyhow::Result<(f64, f64)> {
    let dovecot = super::devstack::Dovecot::start()?;
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
    std::fs::write(&pw, super::devstack::PASSWORD)?;
    let config = daemon_config(&url, &dovecot, &pw, None)?;
    let store = Store::open(&url, 1).await?;
    let shutdown = CancellationToken::new();
    reset_peak_rss();
    let rss_before = rss_mib();
    let cpu_before = cpu_secs().0;
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
    let cpu = cpu_secs().0 - cpu_before;
    let tickets = store.count_tickets().await?;
    shutdown.cancel();
    daemon.await??;
    println!(
        "bench imap: {tickets} of {count} messages IMAP -> SQLite in {secs:.2} s = {:.0} msg/s ({cpu:.2} s CPU); RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB",
        tickets as f64 / secs,
        rss_before,
        rss_mib(),
        peak_rss_mib()
    );
    Ok((tickets as f64 / secs, cpu))
}

pub async fn bench_outbound(count: usize, samples: usize) -> anyhow::Result<f64> {
    use super::devstack::{Dovecot, Smtpd};
    let dovecot = Dovecot::start()?;
    let smtpd = Smtpd::start(&dovecot)?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let pw = dir.path().join("pw");
    std::fs::write(&pw, super::devstack::PASSWORD)?;
    let config = daemon_config(&url, &dovecot, &pw, Some(smtpd.port))?;

    // Throughput: queue `count` acknowledgements, then time the sender alone.
    let wake = Arc::new(tokio::sync::Notify::new());
    let store = Store::open(&url, 1).await?;
    let notifier = crate::notify::notifier(&config).map_err(|p| anyhow::anyhow!("{p}"))?;
    let pipeline = Pipeline::new(config.clone(), store.clone())
        .map_err(|p| anyhow::anyhow!("{p}"))?
        .with_notifier(notifier, wake.clone());
    for chunk in (0..count).collect::<Vec<_>>().chunks(64) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let raw = generate(i);
                pipeline.prepare(
                    "isda-support",
                    crate::pipeline::Origin::File {
                        path: format!("bench-{i}"),
                    },
                    raw,
                )
            })
            .collect();
        pipeline.commit(&batch, None).await?;
    }
    let queued = store.list_outbox(Some("pending"), i64::MAX).await?.len();
    let smtp = config
        .smtp
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no smtp"))?;
    let stop = CancellationToken::new();
    let sender = crate::notify::sender::Sender {
        store: store.clone(),
        transports: crate::notify::sender::transports(&smtp).map_err(anyhow::Error::msg)?,
        config: smtp,
        wake,
        shutdown: stop.clone(),
    };
    let start = Instant::now();
    let task = tokio::spawn(sender.run());
    while !store.list_outbox(Some("pending"), 1).await?.is_empty()
        && start.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.cancel();
    let _ = task.await;
    let sent = store.list_outbox(Some("sent"), i64::MAX).await?.len();
    println!(
        "bench outbound: {sent} of {queued} acknowledgements accepted by OpenSMTPD in {secs:.2} s = {:.0} mails/s",
        sent as f64 / secs
    );
    store.close().await;
    let rate = sent as f64 / secs;
    if samples == 0 {
        return Ok(rate);
    }

    // Latency: the daemon (IMAP IDLE + sender) answering one message at a time.
    let url2 = format!("sqlite://{}", dir.path().join("latency.db").display());
    let mut config2 = (*config).clone();
    config2.store.database_url = url2.clone();
    let config2 = Arc::new(config2);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(crate::daemon::run(
        config2,
        Store::open(&url2, 1).await?,
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut watch = dovecot.session("isda-support@example.edu").await?;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let customer = format!("latency{i}@customers.example");
        let raw = format!(
            "From: {customer}\r\nTo: isda-support@example.edu\r\nSubject: latency {i}\r\nMessage-ID: <lat-{i}@customers.example>\r\n\r\nhello\r\n"
        );
        let mut reader = dovecot.session(&customer).await?;
        let t0 = Instant::now();
        watch.append("INBOX", None, None, raw.as_bytes()).await?;
        loop {
            reader.select("INBOX").await?;
            if !reader.uid_search("ALL").await?.is_empty() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("no acknowledgement for message {i} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        let _ = reader.logout().await;
    }
    let _ = watch.logout().await;
    shutdown.cancel();
    daemon.await??;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    if !latencies.is_empty() {
        println!(
            "bench outbound: arrival in the watched mailbox -> acknowledgement in the customer's mailbox, {} samples: \
             median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            latencies.len(),
            pct(0.5),
            pct(0.95),
            pct(1.0)
        );
    }
    Ok(rate)
}

/// Per rule set: its name and size, rule evaluation and full decision in msg/s.
pub type ClassifyRun = Vec<(String, usize, f64, f64)>;

pub fn bench_classify(generated: usize, count: usize) -> anyhow::Result<ClassifyRun> {
    use crate::classify::Classifier;
    use crate::rules::{Known, RuleSet};
    let config = Config::parse(DEFAULT_CONFIG, "built-in").map_err(|p| anyhow::anyhow!("{p}"))?;
    let messages: Vec<crate::parse::ParsedMessage> = (0..1000)
        .map(|i| crate::parse::parse(&generate(i)))
        .collect();
    let mailboxes: Vec<_> = config.mailboxes.iter().collect();

    let t = Instant::now();
    let shipped = crate::classify::load_rules(&config).map_err(|p| anyhow::anyhow!("{p}"))?;
    let shipped_load = t.elapsed();
    let text = super::generate_rules(generated);
    let t = Instant::now();
    let big = RuleSet::from_sources(&[("generated.toml".to_string(), text)], &Known::domain())
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let big_load = t.elapsed();

    let mut figures = Vec::new();
    for (name, rules, load) in [
        ("shipped", shipped, shipped_load),
        ("generated", big, big_load),
    ] {
        let n_rules = rules.len();
        // A rule's own regex is compiled when a rule first holds: the first
        // pass over the messages pays for it, the second does not.
        let mut passes = [0.0f64; 2];
        for pass in &mut passes {
            let t = Instant::now();
            for (i, m) in messages.iter().enumerate() {
                let ev = rules.evaluate(&mailboxes[i % mailboxes.len()].name, m);
                std::hint::black_box(ev.matched.len());
            }
            *pass = t.elapsed().as_secs_f64() * 1000.0;
        }
        let t = Instant::now();
        let ev = rules.evaluate(&mailboxes[0].name, &messages[0]);
        std::hint::black_box(ev.matched.len());
        println!(
            "bench classify: {name} rules: first pass over {} messages {:.1} ms, second {:.1} ms \
             (the rules' own regexes compiled on first use: {:.1} ms); one message warm {:.3} ms",
            messages.len(),
            passes[0],
            passes[1],
            passes[0] - passes[1],
            t.elapsed().as_secs_f64() * 1000.0
        );
        // The rule engine alone, then the whole decision (priority, calendar, explanation).
        let t = Instant::now();
        let mut hits = 0usize;
        for i in 0..count {
            let m = &messages[i % messages.len()];
            let ev = rules.evaluate(&mailboxes[i % mailboxes.len()].name, m);
            hits += ev.matched.len();
        }
        let engine = count as f64 / t.elapsed().as_secs_f64();
        let classifier = Classifier::new(rules);
        let t = Instant::now();
        let now = crate::clock::now_ms();
        for i in 0..count / 4 {
            let d = classifier.classify(
                &messages[i % messages.len()],
                mailboxes[i % mailboxes.len()],
                now,
                &config,
            );
            hits += d.explanation.len();
        }
        let full = (count / 4) as f64 / t.elapsed().as_secs_f64();
        println!(
            "bench classify: {name} rules ({n_rules}): load {:.1} ms; rule evaluation {engine:.0} msg/s; \
             full decision {full:.0} msg/s (one core, {hits} matches)",
            load.as_secs_f64() * 1000.0
        );
        figures.push((name.to_string(), n_rules, engine, full));
    }
    Ok(figures)
}

/// What `bench pipe` measured.
pub struct PipeRun {
    pub count: usize,
    pub secs: f64,
    /// CPU (user + system) of the children, per message.
    pub cpu_ms_per_message: f64,
    /// CPU of one `triaged check` (configuration, rules and templates
    /// loaded and checked; no store): most of start-up.
    pub startup_cpu_ms: f64,
    /// The same messages through `triaged deliver` (one process each, into
    /// a spool; no rules, templates or store): wall seconds and CPU per
    /// message, which is all start-up.
    pub deliver_secs: f64,
    pub deliver_cpu_ms_per_message: f64,
}

/// One `triaged ingest -` process per message (the built-in deployment, a
/// SQLite file through `TRIAGED_DATABASE_URL`), one after another.
pub fn bench_pipe(count: usize) -> anyhow::Result<PipeRun> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("pipe.db").display());
    // `check` reports the example's unset passwords and exits 1: its exit
    // status is not the question there.
    let run = |args: &[&str], stdin: Option<&[u8]>| -> anyhow::Result<()> {
        let mut child = Command::new(&exe)
            .args(args)
            .current_dir(dir.path())
            .env("TRIAGED_DATABASE_URL", &url)
            .env_remove("TRIAGED_CONFIG")
            .env("RUST_LOG", "error")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if let (Some(raw), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(raw)?;
        }
        let status = child.wait()?;
        anyhow::ensure!(
            status.success() || args == ["check"],
            "triaged {args:?} failed: {status}"
        );
        Ok(())
    };
    // The first run makes the database; not counted.
    run(&["ingest", "-"], Some(&generate(count + 1)))?;
    let checks = 20;
    let before = cpu_secs().1;
    for _ in 0..checks {
        run(&["check"], None)?;
    }
    let startup_cpu_ms = (cpu_secs().1 - before) * 1000.0 / checks as f64;
    let before = cpu_secs().1;
    let start = Instant::now();
    for i in 0..count {
        run(&["ingest", "-"], Some(&generate(i)))?;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms_per_message = (cpu_secs().1 - before) * 1000.0 / count as f64;
    println!(
        "bench pipe: {count} messages, one `triaged ingest -` each, in {secs:.2} s = {:.1} msg/s; \
         {cpu_ms_per_message:.1} ms CPU per message; `triaged check` alone {startup_cpu_ms:.1} ms CPU",
        count as f64 / secs
    );
    // `triaged deliver`: the example deployment with a spool on its first
    // mailbox (relative to the config file), written by one process each.
    let config = dir.path().join("triaged.toml");
    std::fs::write(
        &config,
        crate::config::DEFAULT_CONFIG.replacen(
            "[[mailboxes]]\nname = \"isda-support\"\n",
            "[[mailboxes]]\nname = \"isda-support\"\nspool = \"spool\"\n",
            1,
        ),
    )?;
    let config = config.display().to_string();
    let deliver = [
        "--config",
        config.as_str(),
        "deliver",
        "--mailbox",
        "isda-support",
    ];
    let before = cpu_secs().1;
    let start = Instant::now();
    for i in 0..count {
        run(&deliver, Some(&generate(count + 1 + i)))?;
    }
    let deliver_secs = start.elapsed().as_secs_f64();
    let deliver_cpu_ms_per_message = (cpu_secs().1 - before) * 1000.0 / count as f64;
    let spooled = std::fs::read_dir(dir.path().join("spool/new"))?.count();
    anyhow::ensure!(
        spooled == count,
        "{spooled} of {count} messages in the spool"
    );
    println!(
        "bench pipe: {count} messages, one `triaged deliver` each, in {deliver_secs:.2} s = {:.1} msg/s; \
         {deliver_cpu_ms_per_message:.2} ms CPU per message (all of it start-up)",
        count as f64 / deliver_secs
    );
    Ok(PipeRun {
        count,
        secs,
        cpu_ms_per_message,
        startup_cpu_ms,
        deliver_secs,
        deliver_cpu_ms_per_message,
    })
}
