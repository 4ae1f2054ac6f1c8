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
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

impl Dovecot {
    /// Starts a fresh Dovecot with empty mailboxes.
    pub fn start() -> anyhow::Result<Dovecot> {
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
            let out = Command::new("id").args(["-u", "mail"]).output()?;
            let uid: u32 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("no user `mail`")?;
            std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
            (
                format!("first_valid_uid = {uid}\nfirst_valid_gid = 1\n"),
                "uid=mail gid=mail ",
            )
        } else {
            (String::new(), "")
        };
        let imap_port = free_port()?;
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
ssl = no
disable_plaintext_auth = no
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
    port = 0
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
        let _ = Command::new(doveadm)
            .arg("-c")
            .arg(&self.config)
            .arg("stop")
            .status()?;
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
            fetch_batch: 100,
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
