//! A private mail server on loopback, for the demo, the end-to-end tests and the
//! benchmarks: a real Dovecot (Debian `dovecot-imapd`, `dovecot-lmtpd`) with its
//! own config, users and Maildirs in a temporary folder.
//!
//! Every user has the same password; mailboxes are created on first use.
//! Nothing listens anywhere but 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::{AfterIngest, ImapSettings, Secret, Security};
use crate::sources::imap::{ImapSession, connect};

pub const PASSWORD: &str = "triaged-test";

/// A running Dovecot; stopped when dropped.
#[derive(Debug)]
pub struct Dovecot {
    dir: tempfile::TempDir,
    config: PathBuf,
    pub imap_port: u16,
    pub lmtp_port: u16,
    /// Implicit-TLS IMAP port and the CA that signed the server's certificate,
    /// when started with [`Dovecot::start_tls`].
    pub tls: Option<(u16, PathBuf)>,
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
///
/// Never the same port twice in one process: a port is free only until
/// someone binds it, and the kernel may hand the one just released out again
/// (Dovecot then refuses its config: "duplicate listener" when its IMAP and
/// LMTP ports came out equal; seen with parallel tests).
pub fn free_port() -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port found that this process has not used before")
}

fn find_binary(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Whether Dovecot is installed.
pub fn dovecot_available() -> bool {
    find_binary("dovecot").is_some()
}

fn is_root() -> bool {
    // SAFETY-free: read our own uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A CA and a server certificate for 127.0.0.1 and localhost, signed by it,
/// written into `dir` with the `openssl` command. Returns (ca.pem, cert.pem,
/// key.pem).
pub fn make_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let openssl =
        find_binary("openssl").context("openssl is not installed (apt-get install openssl)")?;
    let p = |name: &str| dir.join(name);
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "3",
        "-subj",
        "/CN=triaged test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ])?;
    Ok((p("ca.pem"), p("server.pem"), p("server.key")))
}

/// The pids of running processes for which `keep` is true.
fn processes(keep: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| keep(pid))
        .collect()
}

/// The processes whose command line contains `needle`.
fn processes_with_arg(needle: &str) -> Vec<u32> {
    processes(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

/// The processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    processes(|pid| {
        // /proc/PID/stat is "pid (comm) state ppid ...", and comm may hold spaces.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string))
            })
            .and_then(|ppid| ppid.parse::<u32>().ok())
            == Some(parent)
    })
}

/// The uid of the `mail` user, which Dovecot's mail processes run as.
fn mail_uid() -> anyhow::Result<u32> {
    let out = Command::new("id").args(["-u", "mail"]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("no user `mail`")
}

impl Dovecot {
    /// Starts a fresh Dovecot with empty mailboxes.
    pub fn start() -> anyhow::Result<Dovecot> {
        Dovecot::start_with(false)
    }

    /// Starts a fresh Dovecot that also speaks TLS: implicit TLS on its own
    /// port and STARTTLS on the IMAP port, with a certificate for 127.0.0.1
    /// signed by a throwaway CA (made with the `openssl` command).
    pub fn start_tls() -> anyhow::Result<Dovecot> {
        Dovecot::start_with(true)
    }

    fn start_with(tls: bool) -> anyhow::Result<Dovecot> {
        let dovecot = find_binary("dovecot")
            .context("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")?;
        let dir = tempfile::Builder::new()
            .prefix("triaged-dovecot-")
            .tempdir()?;
        let root = dir.path();
        let home = root.join("home");
        std::fs::create_dir_all(&home)?;
        // Dovecot's mail processes run as `mail` when we are root: let them in.
        let (uid_line, user_opts) = if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
            let uid = mail_uid()?;
            std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
            (
                format!("first_valid_uid = {uid}\nfirst_valid_gid = 1\n"),
                "uid=mail gid=mail ",
            )
        } else {
            (String::new(), "")
        };
        let imap_port = free_port()?;
        let (ssl, imaps_port, ca) = if tls {
            let (ca, cert, key) = make_certificates(root)?;
            let port = free_port()?;
            (
                format!(
                    "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                    cert.display(),
                    key.display()
                ),
                port,
                Some((port, ca)),
            )
        } else {
            ("ssl = no\n".to_string(), 0, None)
        };
        let lmtp_port = free_port()?;
        let config = root.join("dovecot.conf");
        let r = root.display();
        std::fs::write(
            &config,
            format!(
                r#"# Private Dovecot for triaged tests and demo.
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
{uid_line}mail_location = maildir:~/Maildir
mail_fsync = optimized
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = {user_opts}home={r}/home/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lmtp {{
  auth_username_format = %Lu
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"#
            ),
        )?;
        std::fs::create_dir_all(root.join("state"))?;
        let d = Dovecot {
            dir,
            config,
            imap_port,
            lmtp_port,
            tls: ca,
        };
        d.launch(&dovecot)?;
        Ok(d)
    }

    fn launch(&self, dovecot: &Path) -> anyhow::Result<()> {
        let status = Command::new(dovecot).arg("-c").arg(&self.config).status()?;
        if !status.success() {
            bail!("dovecot failed to start: {status}; log: {}", self.log());
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "dovecot did not listen on {}; log: {}",
                    self.imap_port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server (connections drop); the mailboxes stay on disk.
    pub fn stop(&self) -> anyhow::Result<()> {
        let doveadm = find_binary("doveadm").context("doveadm not found")?;
        // Dovecot's master leaves running mail processes behind when it stops:
        // note its children first, and kill those left over afterwards, so that
        // open connections drop as they would in a crash.
        let children = std::fs::read_to_string(self.dir.path().join("run/master.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .map(children_of)
            .unwrap_or_default();
        let _ = Command::new(doveadm)
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .status()?;
        for pid in children {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok() {
            if Instant::now() > deadline {
                bail!("dovecot did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The master exits after closing its listeners; wait for its pid file to go.
        let pid = self.dir.path().join("run/master.pid");
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the server again on the same ports and mailboxes.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.launch(&find_binary("dovecot").context("dovecot not found")?)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Settings for a watcher of `user`'s `folder` over plain IMAP on loopback.
    /// The password is read from the environment variable `password_env`.
    pub fn imap_settings(&self, user: &str, folder: &str, password_env: &str) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".to_string(),
            port: self.imap_port,
            security: Security::Plain,
            username: user.to_string(),
            password_env: Some(password_env.to_string()),
            password_file: None,
            folder: folder.to_string(),
            after: AfterIngest::Seen,
            processed_folder: "Processed".to_string(),
            idle: true,
            poll_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(25 * 60),
            fetch_batch: None,
            ca_file: None,
        }
    }

    /// An authenticated IMAP session as `user`.
    pub async fn session(&self, user: &str) -> anyhow::Result<ImapSession> {
        let s = self.imap_settings(user, "INBOX", "");
        Ok(connect(&s, &Secret::new(PASSWORD)).await?)
    }

    /// Appends messages to `user`'s `folder` over IMAP.
    pub async fn append(
        &self,
        user: &str,
        folder: &str,
        messages: &[Vec<u8>],
    ) -> anyhow::Result<()> {
        let mut s = self.session(user).await?;
        if folder != "INBOX" {
            let _ = s.create(folder).await;
        }
        for m in messages {
            s.append(folder, None, None, m).await?;
        }
        s.logout().await?;
        Ok(())
    }

    /// Delivers messages straight into `user`'s INBOX Maildir, as a local
    /// delivery agent would; much faster than APPEND for large volumes, and it
    /// works while the server is stopped.
    pub fn deliver_files(&self, user: &str, messages: &[Vec<u8>]) -> anyhow::Result<()> {
        let (local, domain) = user.split_once('@').unwrap_or((user, ""));
        let owner = if is_root() { Some(mail_uid()?) } else { None };
        let home = self.dir.path().join("home");
        let maildir = home.join(domain).join(local).join("Maildir");
        // Every folder from the home down must belong to the mail user.
        let folders = [
            home.join(domain),
            home.join(domain).join(local),
            maildir.clone(),
            maildir.join("cur"),
            maildir.join("new"),
            maildir.join("tmp"),
        ];
        for folder in &folders {
            if !folder.exists() {
                std::fs::create_dir_all(folder)?;
                if let Some(uid) = owner {
                    std::os::unix::fs::chown(folder, Some(uid), Some(uid))?;
                }
            }
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, m) in messages.iter().enumerate() {
            let name = format!("{stamp}.{i}.triaged-devstack");
            let tmp = maildir.join("tmp").join(&name);
            std::fs::write(&tmp, m)?;
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&tmp, Some(uid), Some(uid))?;
            }
            std::fs::rename(&tmp, maildir.join("new").join(&name))?;
        }
        Ok(())
    }

    /// The config text for a triaged mailbox watching `user` here.
    pub fn mailbox_toml(
        &self,
        name: &str,
        desk: &str,
        queue: &str,
        user: &str,
        password_env: &str,
    ) -> String {
        format!(
            "[[mailboxes]]\nname = \"{name}\"\naddress = \"{user}\"\ndesk = \"{desk}\"\ndefault_queue = \"{queue}\"\n\
             [mailboxes.imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nusername = \"{user}\"\n\
             password_env = \"{password_env}\"\npoll_interval_secs = 2\n",
            self.imap_port
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A private OpenSMTPD (Debian `opensmtpd`) on loopback that delivers every
/// recipient, any domain, over LMTP into a [`Dovecot`]: the real path a
/// customer's mail and the desk's answers take. OpenSMTPD keeps one spool
/// (`/var/spool/smtpd`) and one control socket per machine, so instances are
/// serialised by a lock file for as long as an `Smtpd` lives.
#[derive(Debug)]
pub struct Smtpd {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    _lock: std::fs::File,
}

impl Smtpd {
    /// Starts OpenSMTPD on a free port, delivering to Dovecot's LMTP port.
    pub fn start(dovecot: &Dovecot) -> anyhow::Result<Smtpd> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("triaged-opensmtpd.lock"))?;
        lock.lock()?;
        let dir = tempfile::Builder::new()
            .prefix("triaged-smtpd-")
            .tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("smtpd.conf");
        std::fs::write(
            &config,
            format!(
                "# Private OpenSMTPD for triaged tests and demo.\n\
                 table vusers {{ \"@\" = \"mail\" }}\n\
                 listen on 127.0.0.1 port {port}\n\
                 action \"deliver\" lmtp \"127.0.0.1:{}\" rcpt-to virtual <vusers>\n\
                 match from any for any action \"deliver\"\n",
                dovecot.lmtp_port
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
        let mut s = Smtpd {
            child: None,
            dir,
            port,
            _lock: lock,
        };
        // We hold the lock, so any private smtpd still running was left by a
        // process that died without cleaning up: it holds the control socket.
        for pid in processes_with_arg("triaged-smtpd-") {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let gone = Instant::now() + Duration::from_secs(5);
        while !processes_with_arg("triaged-smtpd-").is_empty() && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Mail a previous instance left queued must not reach this one's mailboxes.
        for sub in [
            "queue",
            "incoming",
            "temporary",
            "offline",
            "corrupt",
            "purge",
        ] {
            let d = Path::new("/var/spool/smtpd").join(sub);
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        s.launch()?;
        Ok(s)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let smtpd = find_binary("smtpd")
            .context("OpenSMTPD is not installed (apt-get install opensmtpd)")?;
        let log = std::fs::File::create(self.dir.path().join("smtpd.log"))?;
        let child = Command::new(smtpd)
            .arg("-d")
            .arg("-f")
            .arg(self.dir.path().join("smtpd.conf"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                bail!("smtpd exited with {status}: {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("smtpd did not listen on {}: {}", self.port, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default()
    }

    /// Stops the server (an outage); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Its helper processes go with it; wait until the port is free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        self.stop();
    }
}
