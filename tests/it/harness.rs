//! The end-to-end harness: a private Dovecot per test (from the library's
//! devstack), the real `triaged` binary run as a child process, and helpers to
//! read what it did through its own command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use triaged::dev::devstack::{Dovecot, PASSWORD};

pub const PW_ENV: &str = "TRIAGED_TEST_IMAP_PASSWORD";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_triaged")
}

/// One mailbox of a test deployment.
pub struct Mailbox<'a> {
    pub name: &'a str,
    pub user: &'a str,
    pub queue: &'a str,
    /// `seen` or `move`.
    pub after: &'a str,
}

/// A test's world: a Dovecot, a temp folder, a config file.
pub struct World {
    pub dovecot: Dovecot,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl World {
    /// Starts Dovecot and writes a config with these mailboxes and `extra` TOML
    /// (top-level tables such as `[ingest]`) on `database_url` (default: SQLite
    /// in the temp folder).
    pub fn new(mailboxes: &[Mailbox<'_>], database_url: Option<&str>, extra: &str) -> World {
        World::with(
            Dovecot::start().expect("start dovecot"),
            mailboxes,
            database_url,
            extra,
        )
    }

    /// As [`World::new`], on a Dovecot already started.
    pub fn with(
        dovecot: Dovecot,
        mailboxes: &[Mailbox<'_>],
        database_url: Option<&str>,
        extra: &str,
    ) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database_url
            .map(str::to_string)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("triaged.db").display()));
        let mut text = format!(
            "[store]\ndatabase_url = \"{db}\"\n{extra}\n\
             [imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\npassword_env = \"{PW_ENV}\"\npoll_interval_secs = 2\n\n\
             [[desks]]\nname = \"isda\"\ntag = \"ISDA\"\naddresses = [\"isda-support@example.edu\"]\n\n\
             [[desks]]\nname = \"database\"\ntag = \"DB\"\n\n[[desks]]\nname = \"hosted\"\ntag = \"HELP\"\n\n",
            dovecot.imap_port
        );
        // The deployment of DOMAIN.md, so that the shipped routing rules load;
        // the test's mailboxes are watched, the others are not.
        for (q, desk) in [
            ("Customer-Support", "isda"),
            ("ProductionDefect", "isda"),
            ("ProductionDeploy", "isda"),
            ("Admin", "isda"),
            ("Database", "database"),
            ("Hosted-Help", "hosted"),
        ] {
            text.push_str(&format!(
                "[[queues]]\nname = \"{q}\"\ndesk = \"{desk}\"\n\n"
            ));
        }
        for m in mailboxes {
            text.push_str(&format!(
                "[[mailboxes]]\nname = \"{}\"\naddress = \"{}\"\ndesk = \"isda\"\ndefault_queue = \"{}\"\n\
                 [mailboxes.imap]\nusername = \"{}\"\nafter = \"{}\"\n\n",
                m.name, m.user, m.queue, m.user, m.after
            ));
        }
        for (name, desk, queue) in [
            ("isda-support", "isda", "Customer-Support"),
            ("map-support", "isda", "ProductionDefect"),
            ("db-requests", "database", "Database"),
            ("help", "hosted", "Hosted-Help"),
        ] {
            if !mailboxes.iter().any(|m| m.name == name) {
                text.push_str(&format!(
                    "[[mailboxes]]\nname = \"{name}\"\naddress = \"{name}@example.edu\"\ndesk = \"{desk}\"\ndefault_queue = \"{queue}\"\n\n"
                ));
            }
        }
        let config = dir.path().join("triaged.toml");
        std::fs::write(&config, text).expect("write config");
        World {
            dovecot,
            dir,
            config,
        }
    }

    /// Runs `triaged --config <ours> ARGS` to completion.
    pub fn triaged(&self, args: &[&str]) -> Output {
        output_within(
            Command::new(bin())
                .arg("--config")
                .arg(&self.config)
                .args(args)
                .env(PW_ENV, PASSWORD),
            None,
            COMMAND_LIMIT,
        )
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.triaged(args);
        assert!(
            out.status.success(),
            "triaged {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    pub fn stats(&self) -> Value {
        self.json(&["stats", "--json"])
    }

    pub fn tickets(&self) -> Vec<Value> {
        match self.json(&["tickets", "list", "--json"]) {
            Value::Array(a) => a,
            other => panic!("not a list: {other}"),
        }
    }

    /// Starts the daemon; its log goes to `<tmp>/daemon-N.log`.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    /// Starts the daemon with these environment variables set.
    pub fn start_daemon_with(&self, env: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.path().join(format!("daemon-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env(PW_ENV, PASSWORD)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn daemon");
        Daemon { child, log }
    }
}

/// A running `triaged run`.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (at most `limit`) for the exit status.
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {limit:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it is true or `limit` passes; returns whether it became true.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A simple message with a Message-ID.
pub fn message(id: &str, from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 -0600\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// UIDs in `folder` of `user` matching an IMAP search.
pub async fn search(dovecot: &Dovecot, user: &str, folder: &str, query: &str) -> usize {
    let mut s = dovecot.session(user).await.expect("imap session");
    s.select(folder).await.expect("select");
    let n = s.uid_search(query).await.expect("search").len();
    let _ = s.logout().await;
    n
}

/// A fresh PostgreSQL database for one test; dropped by [`PgDb::drop_db`].
pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDb {
    pub async fn create(tag: &str) -> PgDb {
        use sqlx::Connection;
        let admin = std::env::var("TRIAGED_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!(
            "triaged_{tag}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (set TRIAGED_TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        PgDb {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }

    /// Runs `sql` on the server's admin database; `{db}` stands for this
    /// test's database name.
    pub async fn admin(&self, sql: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .expect("admin connection");
        sqlx::query(&sql.replace("{db}", &self.name))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    pub async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
            let _ = conn.close().await;
        }
    }
}

/// The corpus of real-world messages beside the repository.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// How long one run of the binary may take in a test before it counts as
/// hung. Generous: the slowest command a test runs takes seconds.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Runs `cmd` to completion as `Command::output` does (stdin closed unless
/// `stdin` is given), but for at most `limit`. A child still running then is
/// a hang: its threads' stacks (from gdb, where installed) and what it printed
/// so far fail the test, instead of the suite waiting until CI gives up.
pub fn output_within(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triaged");
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The child may stop reading early; that is its business.
        let _ = pipe.write_all(input);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let stacks = Command::new("gdb")
                .args([
                    "-batch",
                    "-p",
                    &child.id().to_string(),
                    "-ex",
                    "thread apply all bt",
                ])
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("(no stacks: gdb: {e})"));
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "{cmd:?} still running after {limit:?}; killed.\nstderr:\n{}\nstacks:\n{stacks}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs the binary in `dir` (no config file there: the built-in defaults apply).
pub fn run_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    output_within(
        Command::new(bin())
            .current_dir(dir)
            .args(args)
            .env_remove("TRIAGED_CONFIG")
            .env_remove("TRIAGED_DATABASE_URL"),
        stdin,
        COMMAND_LIMIT,
    )
}

/// The shipped deployment (no IMAP, no SMTP) on a database of the test's.
pub struct ShippedDesk {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
}

impl ShippedDesk {
    pub fn new(url: Option<&str>) -> ShippedDesk {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = url
            .map(str::to_string)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("t.db").display()));
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/triaged.example.toml"),
        )
        .expect("example config");
        let mut text = String::new();
        let mut skipping = false;
        for line in shipped.lines() {
            if line.starts_with('[') {
                skipping = matches!(line.trim(), "[imap]" | "[smtp]" | "[mailboxes.imap]");
            }
            if !skipping {
                text.push_str(line);
                text.push('\n');
            }
        }
        let config = dir.path().join("triaged.toml");
        std::fs::write(&config, text).expect("write config");
        ShippedDesk { dir, config, url }
    }

    /// `triaged` with this desk's configuration and database, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("TRIAGED_DATABASE_URL", &self.url)
            .env_remove("RUST_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), None, COMMAND_LIMIT)
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "triaged {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// Ingests the messages (one folder, one run) into `mailbox`; the
    /// last line `ingest --json` prints.
    pub fn ingest(&self, mailbox: &str, raws: &[Vec<u8>]) -> Value {
        let batch = tempfile::tempdir_in(self.dir.path()).expect("batch dir");
        let mut args = vec![
            "ingest".to_string(),
            "--json".to_string(),
            "--mailbox".to_string(),
            mailbox.to_string(),
        ];
        // One file each, named in order and passed in order.
        for (i, raw) in raws.iter().enumerate() {
            let p = batch.path().join(format!("{i:05}.eml"));
            std::fs::write(&p, raw).expect("write message");
            args.push(p.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    }

    pub fn tickets(&self) -> Vec<Value> {
        match self.json(&["tickets", "list", "--json"]) {
            Value::Array(a) => a,
            other => panic!("not a list: {other}"),
        }
    }

    pub fn ticket(&self, number: i64) -> Value {
        self.json(&["tickets", "show", &number.to_string(), "--json"])
    }

    /// Every mail in the outbox, as `triaged outbox list --json` shows it.
    pub fn outbox(&self) -> Vec<Value> {
        match self.json(&["outbox", "list", "--json", "--limit", "10000"]) {
            Value::Array(v) => v,
            other => panic!("outbox list is not an array: {other:#}"),
        }
    }
}

/// Queues one plain mail from the desk to `to` on ticket `number`, as a
/// queue notification (outbox and sender tests).
pub async fn queue_plain_mail(
    tx: &mut triaged::store::Tx,
    number: i64,
    to: &str,
    subject: &str,
    message_id: &str,
    body: &str,
) {
    let raw = format!(
        "From: isda-support@example.edu\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n{body}\r\n"
    );
    let rcpt = vec![to.to_string()];
    tx.queue_mail(
        number,
        &triaged::store::NewMail {
            kind: "queue_notification",
            from: "isda-support@example.edu",
            rcpt: &rcpt,
            subject,
            message_id,
            raw: raw.as_bytes(),
        },
    )
    .await
    .expect("queue");
}

/// A fresh SQLite store (in the returned folder) holding one ticket, from
/// ann@customers.example to isda-support, with one plain mail to her queued
/// per (subject, Message-ID, body) of `mails` (outbox and sender tests).
pub async fn store_with_queued_mail(
    mails: &[(String, String, String)],
) -> (tempfile::TempDir, triaged::store::Store) {
    use triaged::pipeline::{Origin, Outcome, Pipeline};
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let config = triaged::config::Config::parse(triaged::config::DEFAULT_CONFIG, "default")
        .expect("default config");
    let store = triaged::store::Store::open(&url, 1000)
        .await
        .expect("open store");
    let pipeline = Pipeline::new(std::sync::Arc::new(config), store.clone()).expect("rules");
    let p = pipeline.prepare(
        "isda-support",
        Origin::File {
            path: "f.eml".to_string(),
        },
        message(
            "first@customers.example",
            "ann@customers.example",
            "isda-support@example.edu",
            "A question",
            "Hello.",
        ),
    );
    let Outcome::Created(number) = pipeline.commit(&[p], None).await.expect("commit")[0] else {
        panic!("no ticket");
    };
    let mut tx = store.begin().await.expect("begin");
    for (subject, message_id, body) in mails {
        queue_plain_mail(
            &mut tx,
            number,
            "ann@customers.example",
            subject,
            message_id,
            body,
        )
        .await;
    }
    tx.commit().await.expect("commit mail");
    (dir, store)
}

/// Starts the outbox sender on `store` with the `[smtp]` settings `smtp`
/// (TOML); cancel the token to stop it, then await the task.
pub fn start_sender(
    store: &triaged::store::Store,
    smtp: &str,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    use triaged::notify::sender::{Sender, transports};
    let smtp: triaged::config::SmtpConfig = toml::from_str(smtp).expect("smtp config");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(
        Sender {
            store: store.clone(),
            transports: transports(&smtp).expect("transports"),
            config: smtp,
            wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    (shutdown, task)
}

/// The harness's own defence against a hung child: past its limit the child
/// is killed and the test fails, naming the command and showing its stacks.
#[test]
fn a_hung_child_fails_its_test_with_its_stacks() {
    let start = Instant::now();
    let hung = std::panic::catch_unwind(|| {
        output_within(
            Command::new("sleep").arg("600"),
            None,
            Duration::from_secs(1),
        )
    });
    let Err(panic) = hung else {
        panic!("a child sleeping 600 s was not stopped");
    };
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("still running after 1s; killed"), "{text}");
    assert!(text.contains("stacks:"), "{text}");
    if Command::new("gdb").arg("--version").output().is_ok() {
        assert!(text.contains("Thread 1 "), "{text}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(120),
        "{:?}",
        start.elapsed()
    );
    // A child that ends in time is untouched, its output and status kept.
    let out = output_within(
        Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        None,
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}
