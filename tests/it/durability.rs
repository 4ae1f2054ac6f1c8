//! Durability: a full disk, a read-only database and a power cut never lose a
//! message that was acknowledged (flagged or moved) at its source, and never
//! quarantine a valid one. The full disk is a small tmpfs (these tests mount
//! one, so they need root, which the test machines have); the power cut is an
//! LD_PRELOAD shim (`powercut_shim.c`) that keeps, for every file the daemon
//! syncs, a copy as of its last sync.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::Value;
use triaged::dev::devstack::{Dovecot, PASSWORD};

use crate::harness::{Mailbox, PW_ENV, PgDb, World, bin, message, search, wait_for};

const SUPPORT: &str = "isda-support@example.edu";

/// A tmpfs of `size` (as `mount -o size=` takes it) mounted on a fresh folder;
/// unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "these tests mount a small tmpfs to fill the disk, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { _dir: dir, path }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5au8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }

    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.path.join(name).display())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `triaged ARGS` with the built-in deployment on `url`.
fn triaged_on(url: &str, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TRIAGED_DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .output()
        .expect("run triaged")
}

fn stats_on(url: &str) -> Value {
    let out = triaged_on(url, &["stats", "--json"]);
    assert!(
        out.status.success(),
        "stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stats json")
}

/// How many tickets carry each subject.
fn subjects(tickets: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for t in tickets.as_array().expect("ticket list") {
        *out.entry(t["subject"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    out
}

/// The JSON summary `triaged ingest --json` prints last (errors come first).
fn ingest_summary(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The reproduction of issue 7: five messages, one of 4 MB, into a database
/// on a 2 MB tmpfs. Nothing may be reported that was not committed, nothing
/// quarantined; after space is freed, a second run makes every ticket once.
#[test]
fn ingest_on_a_full_disk_reports_honestly_and_loses_nothing() {
    let fs = Tmpfs::mount("2m");
    let input = tempfile::tempdir().expect("tempdir");
    let mut names = Vec::new();
    for (name, from, subject) in [
        ("a0", "a0@c.example", "a0"),
        ("a1", "a1@c.example", "a1"),
        ("c0", "c0@c.example", "c0"),
        ("c1", "c1@c.example", "c1"),
    ] {
        std::fs::write(
            input.path().join(format!("{name}.eml")),
            format!("From: {from}\nSubject: {subject}\nMessage-ID: <{name}@x>\n\nhi\n"),
        )
        .expect("write");
        names.push(subject.to_string());
    }
    let mut big = b"From: big@c.example\nSubject: big\nMessage-ID: <big@x>\n\n".to_vec();
    // 4 MB of letters, about 2.4 MB compressed: over the 2 MB disk.
    big.extend_from_slice(incompressible_lines(4_000_000, 1, "\n").as_bytes());
    std::fs::write(input.path().join("b.eml"), &big).expect("write");
    names.push("big".to_string());
    let url = fs.url("t.db");
    let dir = input.path().to_str().expect("utf-8 path");

    let first = triaged_on(&url, &["ingest", "--json", dir]);
    let reported = ingest_summary(&first);
    let stats = stats_on(&url);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        reported["new_tickets"], stats["tickets"],
        "ingest reported tickets that are not in the store: {reported} vs {stats}\n{stderr}"
    );
    assert_eq!(
        stats["quarantined"], 0,
        "a valid message was quarantined\n{stderr}"
    );
    assert_eq!(reported["quarantined"], 0, "{reported}");
    let done = reported["new_tickets"].as_u64().unwrap_or(0);
    assert_eq!(
        reported["errors"].as_u64().unwrap_or(0) + done,
        5,
        "every message is a ticket or an error: {reported}"
    );
    assert!(done < 5, "the disk was not full after all: {reported}");
    assert!(!first.status.success(), "errors must fail the run");
    assert!(
        stderr.contains("ERROR") && stderr.contains("store_resource_errors"),
        "no ERROR log with the counter:\n{stderr}"
    );

    fs.remount("size=16m");
    let second = triaged_on(&url, &["ingest", "--json", dir]);
    let reported = ingest_summary(&second);
    assert!(
        second.status.success(),
        "{reported}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let stats = stats_on(&url);
    assert_eq!(stats["tickets"], 5, "{stats}");
    assert_eq!(stats["messages"], 5, "{stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    let out = triaged_on(&url, &["tickets", "list", "--json", "--limit", "100"]);
    let by_subject = subjects(&serde_json::from_slice(&out.stdout).expect("json"));
    for name in &names {
        assert_eq!(by_subject.get(name), Some(&1), "{name}: {by_subject:?}");
    }
}

/// A database that cannot be written fails at once with the real reason, not
/// after the pool's 60-second acquire timeout.
#[test]
fn read_only_database_fails_at_once_with_the_reason() {
    let fs = Tmpfs::mount("4m");
    let url = fs.url("t.db");
    let out = triaged_on(&url, &["stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs.remount("ro");
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(["stats", "--json"])
        .env("TRIAGED_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        exited,
        "still waiting after {:?}: {stderr}",
        started.elapsed()
    );
    assert!(!out.status.success());
    assert!(
        !stderr.contains("pool timed out")
            && (stderr.contains("unable to open") || stderr.contains("readonly")),
        "not the real reason: {stderr}"
    );
}

/// The daemon over IMAP with `after = "move"`: the disk fills while a chunk
/// with two large messages is taken. Nothing of it is moved, nothing
/// quarantined, an ERROR is logged; once space is freed every message is a
/// ticket exactly once and every one is in Processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_pauses_on_a_full_disk_and_resumes_when_space_is_freed() {
    let fs = Tmpfs::mount("6m");
    let url = fs.url("triaged.db");
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "move",
        }],
        Some(&url),
        "",
    );
    let first: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            message(
                &format!("s{i}@customer.example"),
                "ann@customer.example",
                SUPPORT,
                &format!("small {i}"),
                "hello",
            )
        })
        .collect();
    world
        .dovecot
        .append(SUPPORT, "INBOX", &first)
        .await
        .expect("append");
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(30), || world.stats()["tickets"] == 4),
        "first messages not ingested; log:\n{}",
        daemon.log()
    );

    let filler = fs.fill();
    // Two large messages, incompressible (the store keeps raw mail
    // zstd-compressed: 456 KB of one letter became a few hundred bytes, which
    // fit in what a failed attempt had freed, so the retry succeeded on a
    // full disk).
    let mut second: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            message(
                &format!("l{i}@customer.example"),
                "bob@customer.example",
                SUPPORT,
                &format!("large {i}"),
                &incompressible_lines(456_000, i + 1, "\r\n"),
            )
        })
        .collect();
    second.extend((4..7).map(|i| {
        message(
            &format!("s{i}@customer.example"),
            "ann@customer.example",
            SUPPORT,
            &format!("small {i}"),
            "hello",
        )
    }));
    world
        .dovecot
        .append(SUPPORT, "INBOX", &second)
        .await
        .expect("append");
    // SQLITE_FULL is code 13.
    assert!(
        wait_for(Duration::from_secs(30), || daemon
            .log()
            .contains("(code: 13)")),
        "the disk did not fill; log:\n{}",
        daemon.log()
    );
    // Paused: more attempts fail, and nothing leaves INBOX meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = daemon.log();
    assert_eq!(
        world.stats()["quarantined"],
        0,
        "a valid message was quarantined; log:\n{log}"
    );
    assert_eq!(
        search(&world.dovecot, SUPPORT, "INBOX", "ALL").await,
        5,
        "a message left INBOX without its ticket; log:\n{log}"
    );
    assert_eq!(search(&world.dovecot, SUPPORT, "Processed", "ALL").await, 4);
    assert!(
        log.contains("ERROR")
            && log.contains("mailbox paused")
            && log.contains("store_resource_errors"),
        "no ERROR log with the counter; log:\n{log}"
    );

    std::fs::remove_file(&filler).expect("free the disk");
    assert!(
        wait_for(Duration::from_secs(60), || world.stats()["tickets"] == 9),
        "not resumed after space was freed; log:\n{}",
        daemon.log()
    );
    assert!(
        count_becomes(&world.dovecot, "Processed", 9, Duration::from_secs(20)).await,
        "not every message moved; log:\n{}",
        daemon.log()
    );
    daemon.terminate(Duration::from_secs(20));
    let stats = world.stats();
    assert_eq!(stats["messages"], 9, "{stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    let by_subject = subjects(&world.json(&["tickets", "list", "--json", "--limit", "100"]));
    for i in 0..7 {
        assert_eq!(
            by_subject.get(&format!("small {i}")),
            Some(&1),
            "{by_subject:?}"
        );
    }
    for i in 0..2 {
        assert_eq!(
            by_subject.get(&format!("large {i}")),
            Some(&1),
            "{by_subject:?}"
        );
    }
    assert_eq!(search(&world.dovecot, SUPPORT, "INBOX", "ALL").await, 0);
}

/// PostgreSQL refusing every write (a hot standby, `default_transaction_read_only`:
/// SQLSTATE 25006) pauses the mailbox like a full disk: nothing is quarantined,
/// nothing leaves INBOX without its ticket, and all flows once writes return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_only_pauses_and_resumes() {
    let db = PgDb::create("readonly").await;
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "move",
        }],
        Some(&db.url),
        "",
    );
    let batch = |range: std::ops::Range<usize>| -> Vec<Vec<u8>> {
        range
            .map(|i| {
                message(
                    &format!("ro{i}@customer.example"),
                    "ann@customer.example",
                    SUPPORT,
                    &format!("read-only {i}"),
                    "hello",
                )
            })
            .collect()
    };
    world
        .dovecot
        .append(SUPPORT, "INBOX", &batch(0..3))
        .await
        .expect("append");
    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(30), || world.stats()["tickets"] == 3),
        "first messages not ingested; log:\n{}",
        daemon.log()
    );

    // Writes refused from now on: new sessions are read-only, old ones end.
    let kick = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()";
    db.admin("ALTER DATABASE {db} SET default_transaction_read_only = on")
        .await;
    db.admin(kick).await;
    world
        .dovecot
        .append(SUPPORT, "INBOX", &batch(3..7))
        .await
        .expect("append");
    assert!(
        wait_for(Duration::from_secs(30), || daemon
            .log()
            .contains("read-only transaction")),
        "no read-only refusal seen; log:\n{}",
        daemon.log()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // (The CLI cannot open a read-only database: migrations need a write.)
    let log = daemon.log();
    assert!(!log.contains("quarantined"), "quarantined; log:\n{log}");
    assert_eq!(
        search(&world.dovecot, SUPPORT, "INBOX", "ALL").await,
        4,
        "a message left INBOX without its ticket; log:\n{log}"
    );
    assert!(
        log.contains("ERROR") && log.contains("store_resource_errors=1"),
        "no ERROR log with the counter; log:\n{log}"
    );

    db.admin("ALTER DATABASE {db} RESET default_transaction_read_only")
        .await;
    db.admin(kick).await;
    assert!(
        wait_for(Duration::from_secs(60), || world.stats()["tickets"] == 7),
        "not resumed once writes returned; log:\n{}",
        daemon.log()
    );
    assert!(
        count_becomes(&world.dovecot, "Processed", 7, Duration::from_secs(20)).await,
        "not every message moved; log:\n{}",
        daemon.log()
    );
    daemon.terminate(Duration::from_secs(20));
    let stats = world.stats();
    assert_eq!(
        (stats["messages"].as_i64(), stats["quarantined"].as_i64()),
        (Some(7), Some(0)),
        "{stats}"
    );
    db.drop_db().await;
}

/// Messages in `SUPPORT`'s `folder`; 0 while it does not exist.
async fn folder_count(dovecot: &Dovecot, folder: &str) -> usize {
    let mut s = dovecot.session(SUPPORT).await.expect("imap session");
    let n = match s.select(folder).await {
        Ok(_) => s.uid_search("ALL").await.expect("search").len(),
        Err(_) => 0,
    };
    let _ = s.logout().await;
    n
}

/// Waits until `SUPPORT`'s `folder` holds `n` messages.
async fn count_becomes(dovecot: &Dovecot, folder: &str, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if search(dovecot, SUPPORT, folder, "ALL").await == n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Compiles the power-cut shim into `dir`.
fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/powercut_shim.c");
    let out = dir.join("powercut_shim.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling {}", src.display());
    out
}

/// Subjects of the messages in `user`'s `folder`.
async fn folder_subjects(dovecot: &Dovecot, user: &str, folder: &str) -> Vec<String> {
    let mut s = dovecot.session(user).await.expect("imap session");
    s.select(folder).await.expect("select");
    let fetches: Vec<_> = s
        .uid_fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .expect("fetch");
    let mut out = Vec::new();
    for f in &fetches {
        let head = String::from_utf8_lossy(f.header().unwrap_or_default()).to_string();
        if let Some(subject) = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject:"))
            .map(|v| v.trim().to_string())
        {
            out.push(subject);
        }
    }
    drop(fetches);
    let _ = s.logout().await;
    out
}

/// A power cut while the daemon ingests with `after = "move"`: the daemon runs
/// under the shim, is killed with SIGKILL mid-ingest, and its database folder is
/// replaced by what had been synced. Every message already moved to Processed
/// must have its ticket in that database; a restarted daemon then takes the
/// rest, every message exactly once. With `synchronous = NORMAL` the commits
/// before the moves were never synced and the moved messages are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_moved_before_a_power_cut_has_its_ticket() {
    const COUNT: usize = 120;
    let work = tempfile::tempdir().expect("tempdir");
    let shim = build_shim(work.path());
    let db_dir = work.path().join("db");
    let shadow = work.path().join("shadow");
    std::fs::create_dir(&db_dir).expect("db dir");
    std::fs::create_dir(&shadow).expect("shadow dir");
    let url = format!("sqlite://{}", db_dir.join("triaged.db").display());
    let world = World::new(
        &[Mailbox {
            name: "isda-support",
            user: SUPPORT,
            queue: "Customer-Support",
            after: "move",
        }],
        Some(&url),
        "",
    );
    // Small chunks: many commits, each followed by a move.
    let config = std::fs::read_to_string(&world.config).expect("config");
    let config = config.replacen(
        "poll_interval_secs = 2\n",
        "poll_interval_secs = 2\nfetch_batch = 3\n",
        1,
    );
    std::fs::write(&world.config, config).expect("config");
    let messages: Vec<Vec<u8>> = (0..COUNT)
        .map(|i| {
            message(
                &format!("pc{i}@customer.example"),
                "ann@customer.example",
                SUPPORT,
                &format!("power cut {i:03}"),
                "The lights went out.",
            )
        })
        .collect();
    world
        .dovecot
        .deliver_files(SUPPORT, &messages)
        .expect("deliver");

    let log = work.path().join("daemon-shim.log");
    let mut daemon: Child = Command::new(bin())
        .arg("--config")
        .arg(&world.config)
        .arg("run")
        .env(PW_ENV, PASSWORD)
        .env("RUST_LOG", "info")
        .env("LD_PRELOAD", &shim)
        .env("POWERCUT_WATCH", &db_dir)
        .env("POWERCUT_SHADOW", &shadow)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn daemon");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut moved = 0;
    while Instant::now() < deadline {
        moved = folder_count(&world.dovecot, "Processed").await;
        if moved >= COUNT / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The power cut.
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(moved > 0, "nothing was moved; log:\n{}", read_log());

    let processed = folder_subjects(&world.dovecot, SUPPORT, "Processed").await;
    for entry in std::fs::read_dir(&db_dir).expect("db dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    let mut restored = Vec::new();
    for entry in std::fs::read_dir(&shadow).expect("shadow") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with('.') {
            std::fs::copy(&path, db_dir.join(name)).expect("restore");
            restored.push(name.to_string());
        }
    }

    let after_cut = subjects(&world.json(&["tickets", "list", "--json", "--limit", "1000"]));
    let lost: Vec<&String> = processed
        .iter()
        .filter(|s| !after_cut.contains_key(*s))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} messages moved to Processed before the power cut have no ticket \
         (synced files: {restored:?}): {lost:?}\nlog:\n{}",
        lost.len(),
        processed.len(),
        read_log()
    );

    let daemon = world.start_daemon();
    assert!(
        wait_for(Duration::from_secs(90), || world.stats()["tickets"]
            .as_u64()
            .unwrap_or(0)
            >= COUNT as u64),
        "not every message ingested after the restart; log:\n{}",
        daemon.log()
    );
    assert!(
        count_becomes(&world.dovecot, "INBOX", 0, Duration::from_secs(30)).await,
        "messages left in INBOX; log:\n{}",
        daemon.log()
    );
    daemon.terminate(Duration::from_secs(20));
    let stats = world.stats();
    assert_eq!(stats["tickets"], COUNT, "{stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    let by_subject = subjects(&world.json(&["tickets", "list", "--json", "--limit", "1000"]));
    for i in 0..COUNT {
        assert_eq!(
            by_subject.get(&format!("power cut {i:03}")),
            Some(&1),
            "power cut {i:03}"
        );
    }
}

/// A database error with only a code, as the drivers report them.
#[derive(Debug)]
struct Coded(&'static str);

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}", self.0)
    }
}

impl std::error::Error for Coded {}

impl sqlx::error::DatabaseError for Coded {
    fn message(&self) -> &str {
        self.0
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.0.into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

/// Resource errors of both backends pause the work (retryable, never
/// quarantined); errors about the content do not.
#[test]
fn resource_errors_are_transient_content_errors_are_not() {
    use triaged::store::StoreError;
    let err = |code: &'static str| StoreError::Db(sqlx::Error::Database(Box::new(Coded(code))));
    // SQLite: FULL, IOERR and IOERR_WRITE (778), READONLY, CANTOPEN, NOMEM;
    // PostgreSQL: disk full, out of memory, read-only transaction, I/O error.
    for code in [
        "13", "10", "778", "8", "14", "7", "53100", "53200", "25006", "58030",
    ] {
        assert!(err(code).is_resource(), "{code}");
        assert!(err(code).is_retryable(), "{code}");
    }
    // SQLite TOOBIG, CONSTRAINT (NOT NULL), MISMATCH; PostgreSQL invalid text,
    // value too long, index row too large.
    for code in ["18", "1299", "20", "22021", "22001", "54000"] {
        assert!(!err(code).is_resource(), "{code}");
        assert!(!err(code).is_retryable(), "{code}");
    }
}

/// About `bytes` of lines of 76 pseudo-random capital letters (a xorshift
/// generator seeded by `seed`), each ended by `eol`: mail that zstd cannot
/// shrink much (to about 60 %), so that it really needs its room on a disk.
pub(crate) fn incompressible_lines(bytes: usize, seed: u64, eol: &str) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = String::with_capacity(bytes + 80);
    while out.len() < bytes {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(char::from(b'A' + (x % 26) as u8));
        }
        out.push_str(eol);
    }
    out
}
