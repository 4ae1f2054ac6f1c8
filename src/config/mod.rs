//! Configuration: `triaged.toml`, typed, validated, with every problem reported
//! as `file:line: reason`.
//!
//! Layers, later wins: the built-in defaults (the shipped example deployment,
//! `deploy/triaged.example.toml`), the config file, then the environment
//! (`TRIAGED_DATABASE_URL`). Secrets are read from an environment variable or a
//! file named in the config, and are wrapped in [`Secret`] so they never print.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use crate::problem::{Problem, Problems, line_of, toml_reason};
pub use redact::{redact_text, redact_url};

mod check;
mod redact;
mod sla;

pub use sla::{ResolutionTargets, SlaConfig, SlaLevelConfig, UrgentConfig, parse_time_of_day};

/// The shipped example deployment, used when no config file exists.
pub const DEFAULT_CONFIG: &str = include_str!("../../deploy/triaged.example.toml");
pub const DEFAULT_CONFIG_NAME: &str = "<built-in deploy/triaged.example.toml>";

/// A secret value: prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_database_url")]
    pub database_url: String,
}

fn default_database_url() -> String {
    "sqlite://triaged.db".to_string()
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            database_url: default_database_url(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    #[serde(default = "default_rules_dir")]
    pub rules: PathBuf,
    #[serde(default = "default_templates_dir")]
    pub templates: PathBuf,
}

fn default_rules_dir() -> PathBuf {
    PathBuf::from("routing-rules")
}
fn default_templates_dir() -> PathBuf {
    PathBuf::from("templates")
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            rules: default_rules_dir(),
            templates: default_templates_dir(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Messages larger than this are quarantined instead of ticketed.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// How many messages share one database transaction at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}
fn default_batch_size() -> usize {
    64
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_message_bytes: default_max_message_bytes(),
            batch_size: default_batch_size(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// The first ticket gets this number.
    #[serde(default = "default_first_number")]
    pub first_number: i64,
    /// A reply to a ticket resolved at most this many days ago reopens it;
    /// a later one opens a new ticket linked to it.
    #[serde(default = "default_reopen_window_days")]
    pub reopen_window_days: u32,
}

fn default_reopen_window_days() -> u32 {
    30
}

impl TicketsConfig {
    /// The reopen window in milliseconds.
    pub fn reopen_window_ms(&self) -> i64 {
        i64::from(self.reopen_window_days) * 86_400_000
    }
}

fn default_first_number() -> i64 {
    1000
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            first_number: default_first_number(),
            reopen_window_days: default_reopen_window_days(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    pub name: Spanned<String>,
    /// The case tag in subjects, e.g. `ISDA` in `[ISDA #1042]`.
    pub tag: String,
    /// The desk's name as customers read it (default: its name).
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default = "default_time_zone")]
    pub time_zone: Spanned<String>,
    /// Business hours per weekday (default Monday to Friday 08:00-17:00),
    /// e.g. `mon = ["08:00-12:00", "13:00-17:00"]`.
    pub hours: Option<Spanned<crate::calendar::WeeklyHoursConfig>>,
    /// Dates (`YYYY-MM-DD`) the desk is closed.
    #[serde(default)]
    pub holidays: Vec<Spanned<String>>,
    /// The desk's own addresses (never acknowledged, never looped to).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Escalations (and daily status mail) about the desk's tickets.
    #[serde(default)]
    pub managers: Vec<String>,
    /// Out of business hours, a Critical ticket pages these addresses at
    /// once (an `oncall` escalation) instead of waiting for the morning.
    #[serde(default)]
    pub oncall: Vec<String>,
    #[serde(default)]
    pub integrators: Vec<String>,
    /// The desk's team: the integrators who answer its tickets. Each entry is
    /// an address (`jlee@example.edu`) or a bare domain (`ops.example.edu`:
    /// everyone at exactly that domain, not its subdomains). A reply from a
    /// team member is correspondence, relayed to the customer; a customer's
    /// reply is relayed to the team when nobody owns the ticket. Team
    /// addresses are internal: never shown to customers.
    #[serde(default)]
    pub team: Vec<String>,
    /// A per-desk address for internal notes: mail to it is a comment,
    /// relayed to the team only, never to the customer. Internal.
    #[serde(default)]
    pub comment_address: Option<String>,
}

fn default_time_zone() -> Spanned<String> {
    Spanned::new(0..0, "America/Chicago".to_string())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: Spanned<String>,
    pub desk: Spanned<String>,
    /// The kind of a ticket here when no rule sets one (default `service`).
    pub default_kind: Option<Spanned<String>>,
    /// Addresses told of every new ticket in this queue.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// How to leave a message once its ticket is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterIngest {
    /// Set `\Seen` and leave it in the folder.
    Seen,
    /// Move it to `processed_folder`.
    Move,
}

/// Transport security of an IMAP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain connection upgraded with STARTTLS.
    Starttls,
    /// No TLS: refused unless the host is a loopback address.
    Plain,
}

/// IMAP settings; every field may be left to the `[imap]` defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub folder: Option<String>,
    pub after: Option<AfterIngest>,
    pub processed_folder: Option<String>,
    pub idle: Option<bool>,
    pub poll_interval_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub fetch_batch: Option<usize>,
    /// PEM file of extra CA certificates to trust (an internal CA); the public
    /// web roots are always trusted.
    pub ca_file: Option<PathBuf>,
}

impl ImapConfig {
    fn or(&self, d: &ImapConfig) -> ImapConfig {
        ImapConfig {
            host: self.host.clone().or_else(|| d.host.clone()),
            port: self.port.or(d.port),
            security: self.security.or(d.security),
            username: self.username.clone().or_else(|| d.username.clone()),
            password_env: self.password_env.clone().or_else(|| d.password_env.clone()),
            password_file: self
                .password_file
                .clone()
                .or_else(|| d.password_file.clone()),
            folder: self.folder.clone().or_else(|| d.folder.clone()),
            after: self.after.or(d.after),
            processed_folder: self
                .processed_folder
                .clone()
                .or_else(|| d.processed_folder.clone()),
            idle: self.idle.or(d.idle),
            poll_interval_secs: self.poll_interval_secs.or(d.poll_interval_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(d.idle_timeout_secs),
            fetch_batch: self.fetch_batch.or(d.fetch_batch),
            ca_file: self.ca_file.clone().or_else(|| d.ca_file.clone()),
        }
    }
}

/// A `[[mailboxes]]` table as written; [`Mailbox`] is what the rest uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MailboxConfig {
    pub name: Spanned<String>,
    pub address: String,
    pub desk: Spanned<String>,
    pub default_queue: Spanned<String>,
    pub imap: Option<ImapConfig>,
    /// A Maildir that `triaged deliver --mailbox NAME` writes to and the
    /// daemon ingests from.
    pub spool: Option<PathBuf>,
}

/// Outgoing mail server. Without `[smtp]`, mail is queued in the outbox and
/// waits there (see `triaged outbox list`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: Option<u16>,
    /// tls (implicit, 465), starttls (587), or plain (loopback only, 25).
    #[serde(default = "default_smtp_security")]
    pub security: Security,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// First retry after a temporary failure; doubles up to `retry_max_secs`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// A mail still failing temporarily after this long is given up as failed.
    #[serde(default = "default_give_up")]
    pub give_up_after_secs: u64,
    /// Mails sent at once.
    #[serde(default = "default_smtp_concurrency")]
    pub concurrency: usize,
}

fn default_smtp_security() -> Security {
    Security::Starttls
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_retry_initial() -> u64 {
    10
}
fn default_retry_max() -> u64 {
    1800
}
fn default_give_up() -> u64 {
    5 * 24 * 3600
}
/// Lanes, each with its own kept connection (`notify::smtp`).
fn default_smtp_concurrency() -> usize {
    16
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::Plain => 25,
        })
    }

    /// The password, if the server wants authentication.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        read_secret(self.password_env.as_deref(), self.password_file.as_deref())
            .map(Some)
            .or_else(|e| {
                if self.password_env.is_none() && self.password_file.is_none() {
                    Ok(None)
                } else {
                    Err(e)
                }
            })
    }
}

/// What the desk mails, and to whom at most.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Send acknowledgements to senders of new tickets.
    #[serde(default = "default_true")]
    pub acknowledge: bool,
    /// At most this many acknowledgements to one sender per hour.
    #[serde(default = "default_ack_limit")]
    pub ack_limit_per_hour: i64,
    /// At most this many tickets from one sender get notifications (queue and
    /// urgent lists) per hour; the rest are recorded as suppressed.
    #[serde(default = "default_sender_notify_limit")]
    pub notify_limit_per_sender_per_hour: i64,
    /// At most this many tickets with one alert key get notifications per hour.
    #[serde(default = "default_alert_notify_limit")]
    pub notify_limit_per_alert_per_hour: i64,
    /// Who hears a reply from the requester (or anyone else let in who is not
    /// on the team): the ticket's owner, else the team.
    #[serde(default)]
    pub relay_requester_replies_to: RelayTo,
    /// Whether such a reply also goes to the internal part of the ticket's
    /// recipient list.
    #[serde(default = "default_true")]
    pub relay_to_internal_recipients: bool,
    /// Attachments up to this size (each, decoded) are relayed with
    /// correspondence; larger ones are listed by name and size only.
    #[serde(default = "default_max_relayed_attachment_bytes")]
    pub max_relayed_attachment_bytes: u64,
}

/// Several daemons on one database (`[cluster]`): each mailbox is watched by
/// one daemon at a time, under a lease renewed every third of `lease_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a lease lasts without renewal: a dead daemon's mailboxes are
    /// taken over by another within this time.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    30
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            lease_secs: default_lease_secs(),
        }
    }
}

impl ClusterConfig {
    /// The lease time.
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }
}

/// The HTTP listener (`[http]`): `/metrics`, `/healthz`, `/readyz`. Absent:
/// no listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port, e.g. `127.0.0.1:9187`.
    pub listen: std::net::SocketAddr,
    /// How long a mailbox may be retrying its connection before `/readyz`
    /// reports it (a refused login is reported at once).
    #[serde(default = "default_retry_budget_secs")]
    pub retry_budget_secs: u64,
}

fn default_retry_budget_secs() -> u64 {
    300
}

/// Commands by mail (`[commands]`): who may steer a ticket with command
/// lines at the top of a reply (`/take`, `/queue ...`; see `commands`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// A team member's commands are obeyed only when the message carries an
    /// `Authentication-Results` header from one of `trusted_authserv_ids`
    /// showing DKIM, SPF or DMARC pass for the From domain.
    #[serde(default = "default_true")]
    pub require_authenticated: bool,
    /// The authserv-id(s) of the receiving server(s) whose
    /// `Authentication-Results` headers are believed (usually the MX host
    /// name); headers from anyone else are ignored.
    #[serde(default)]
    pub trusted_authserv_ids: Vec<String>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            require_authenticated: true,
            trusted_authserv_ids: Vec::new(),
        }
    }
}

/// Who hears a requester's reply (`[notify] relay_requester_replies_to`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTo {
    /// The owner; the whole team while nobody owns the ticket.
    #[default]
    Owner,
    /// The whole team (and the owner), always.
    Team,
    /// Nobody: replies are recorded on the ticket only.
    None,
}

fn default_max_relayed_attachment_bytes() -> u64 {
    10 * 1024 * 1024
}

fn default_sender_notify_limit() -> i64 {
    10
}
fn default_alert_notify_limit() -> i64 {
    3
}

fn default_true() -> bool {
    true
}
fn default_ack_limit() -> i64 {
    5
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            acknowledge: true,
            ack_limit_per_hour: default_ack_limit(),
            notify_limit_per_sender_per_hour: default_sender_notify_limit(),
            notify_limit_per_alert_per_hour: default_alert_notify_limit(),
            relay_requester_replies_to: RelayTo::default(),
            relay_to_internal_recipients: true,
            max_relayed_attachment_bytes: default_max_relayed_attachment_bytes(),
        }
    }
}

/// Reads a secret from an environment variable or a file.
pub fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<Secret, String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(file) = file {
        return std::fs::read_to_string(file)
            .map(|s| Secret::new(s.trim_end_matches(['\r', '\n'])))
            .map_err(|e| format!("cannot read password file {}: {e}", file.display()));
    }
    Err("no password_env or password_file".to_string())
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    paths: PathsConfig,
    #[serde(default)]
    ingest: IngestConfig,
    #[serde(default)]
    tickets: TicketsConfig,
    #[serde(default)]
    imap: ImapConfig,
    smtp: Option<Spanned<SmtpConfig>>,
    #[serde(default)]
    notify: NotifyConfig,
    commands: Option<Spanned<CommandsConfig>>,
    cluster: Option<Spanned<ClusterConfig>>,
    http: Option<HttpConfig>,
    /// Absent: the defaults of DOMAIN.md, which may name queues a smaller
    /// deployment lacks; present: checked against the queues and desks.
    priority: Option<crate::priority::PriorityConfig>,
    targets: Option<crate::priority::TargetsConfig>,
    #[serde(default)]
    sla: SlaConfig,
    #[serde(default)]
    desks: Vec<DeskConfig>,
    #[serde(default)]
    queues: Vec<QueueConfig>,
    #[serde(default)]
    mailboxes: Vec<MailboxConfig>,
}

/// Resolved IMAP settings for one mailbox, password not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub folder: String,
    pub after: AfterIngest,
    pub processed_folder: String,
    pub idle: bool,
    pub poll_interval: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    /// Messages per chunk (one FETCH, one transaction); `None`: adaptive,
    /// from 100 up to 500 as the backlog grows. Either way a chunk holds
    /// at most 2 MiB of mail.
    pub fetch_batch: Option<usize>,
    pub ca_file: Option<PathBuf>,
}

impl ImapSettings {
    /// Reads the password from its environment variable or file.
    pub fn password(&self) -> Result<Secret, String> {
        read_secret(self.password_env.as_deref(), self.password_file.as_deref())
    }
}

/// One mailbox, resolved once when the configuration is read: its desk and
/// default queue (both known to exist) and its IMAP settings over the
/// `[imap]` defaults. It travels whole to whoever needs it (the IMAP watcher,
/// classification) instead of as a name looked up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    /// The address mail to this mailbox is sent to.
    pub address: String,
    pub desk: String,
    /// The queue of a ticket no rule routes elsewhere.
    pub default_queue: String,
    /// `None` for a mailbox without `[mailboxes.imap]`: not watched.
    pub imap: Option<ImapSettings>,
    /// The Maildir `triaged deliver` writes this mailbox's mail to (from an
    /// MTA) and the daemon ingests; `None`: no spool.
    pub spool: Option<PathBuf>,
    /// The line of its `name` in the config file, for problems found later
    /// (its password); 0 when not from a file.
    pub line: usize,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    pub store: StoreConfig,
    pub paths: PathsConfig,
    pub ingest: IngestConfig,
    pub tickets: TicketsConfig,
    pub smtp: Option<SmtpConfig>,
    /// The line of `[smtp]` in the config file, for problems found later.
    pub smtp_line: usize,
    pub notify: NotifyConfig,
    pub commands: CommandsConfig,
    pub cluster: ClusterConfig,
    /// `None`: no HTTP listener.
    pub http: Option<HttpConfig>,
    pub priority: crate::priority::PriorityConfig,
    pub targets: crate::priority::TargetsConfig,
    /// The SLA clock: warnings, escalations, daily status.
    pub sla: SlaConfig,
    pub desks: Vec<DeskConfig>,
    /// Each desk's business-hours calendar, by desk name.
    pub calendars: std::collections::BTreeMap<String, crate::calendar::Calendar>,
    pub queues: Vec<QueueConfig>,
    /// Every mailbox, resolved, in the order of the file.
    pub mailboxes: Vec<Mailbox>,
}

impl Config {
    /// Loads from `path`, or `TRIAGED_CONFIG`, or `./triaged.toml`, or the
    /// built-in defaults when none of those exists. Applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, Problems> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TRIAGED_CONFIG").map(PathBuf::from));
        let mut config = match explicit {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    Problems(vec![Problem {
                        file: p.display().to_string(),
                        line: 0,
                        reason: format!("cannot read config: {e}"),
                    }])
                })?;
                let mut config = Config::parse(&text, &p.display().to_string())?;
                if let Some(base) = p.parent().filter(|b| !b.as_os_str().is_empty()) {
                    config.resolve_paths(base);
                }
                config
            }
            None => {
                let p = Path::new("triaged.toml");
                match std::fs::read_to_string(p) {
                    Ok(text) => Config::parse(&text, "triaged.toml")?,
                    Err(_) => Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)?,
                }
            }
        };
        if let Ok(url) = std::env::var("TRIAGED_DATABASE_URL")
            && !url.is_empty()
        {
            config.store.database_url = url;
        }
        Ok(config)
    }

    /// Parses and validates config text; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<Config, Problems> {
        let raw = check::read(text, file)?;
        let mut found = check::Found::new(text, file);
        let calendars = check::desks(&raw.desks, &mut found);
        let desk_names: HashSet<&str> = raw
            .desks
            .iter()
            .map(|d| d.name.get_ref().as_str())
            .collect();
        check::queues(&raw.queues, &desk_names, &mut found);
        let queue_names: HashSet<&str> = raw
            .queues
            .iter()
            .map(|q| q.name.get_ref().as_str())
            .collect();
        let mailboxes = check::mailboxes(&raw, &desk_names, &queue_names, &mut found);
        check::smtp(raw.smtp.as_ref(), &mut found);
        check::commands(raw.commands.as_ref(), &mut found);
        check::cluster(raw.cluster.as_ref(), &mut found);
        check::priority_and_targets(&raw, &mut found);
        check::sla(&raw, &mut found);
        check::essentials(&raw, &mut found);
        found.finish()?;
        Ok(Config {
            source: file.to_string(),
            store: raw.store,
            paths: raw.paths,
            ingest: raw.ingest,
            tickets: raw.tickets,
            smtp_line: raw
                .smtp
                .as_ref()
                .map(|s| line_of(text, s.span().start))
                .unwrap_or(0),
            smtp: raw.smtp.map(Spanned::into_inner),
            notify: raw.notify,
            commands: raw.commands.map(Spanned::into_inner).unwrap_or_default(),
            cluster: raw.cluster.map(Spanned::into_inner).unwrap_or_default(),
            http: raw.http,
            priority: raw.priority.unwrap_or_default(),
            targets: raw.targets.unwrap_or_default(),
            sla: raw.sla,
            calendars,
            desks: raw.desks,
            queues: raw.queues,
            mailboxes,
        })
    }

    /// Makes the relative paths of a config file relative to its folder
    /// `base` (the database file, rules, templates, password and CA files),
    /// so that the file means the same from any working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let join_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                join(p);
            }
        };
        self.store.database_url = resolve_sqlite_url(&self.store.database_url, base);
        join(&mut self.paths.rules);
        join(&mut self.paths.templates);
        for m in &mut self.mailboxes {
            join_opt(&mut m.spool);
            if let Some(imap) = &mut m.imap {
                join_opt(&mut imap.password_file);
                join_opt(&mut imap.ca_file);
            }
        }
        if let Some(smtp) = &mut self.smtp {
            join_opt(&mut smtp.password_file);
            join_opt(&mut smtp.ca_file);
        }
    }

    pub fn desk(&self, name: &str) -> Option<&DeskConfig> {
        self.desks.iter().find(|d| d.name.get_ref() == name)
    }

    pub fn mailbox(&self, name: &str) -> Option<&Mailbox> {
        self.mailboxes.iter().find(|m| m.name == name)
    }

    /// The queues and mailboxes a rule set may name (for `rules::RuleSet`).
    pub fn known_names(&self) -> crate::rules::Known {
        crate::rules::Known::new(
            self.queues.iter().map(|q| q.name.get_ref().clone()),
            self.mailboxes.iter().map(|m| m.name.clone()),
        )
    }

    /// The named mailbox, or the first one when none is named (what a message
    /// counts as arriving in when read from a file). `Err` says why not.
    pub fn mailbox_or_first(&self, name: Option<&str>) -> Result<&Mailbox, String> {
        match name {
            Some(n) => self.mailbox(n).ok_or_else(|| {
                let known: Vec<&str> = self.mailboxes.iter().map(|m| m.name.as_str()).collect();
                format!("unknown mailbox {n:?} (configured: {})", known.join(", "))
            }),
            None => self
                .mailboxes
                .first()
                .ok_or_else(|| "no mailbox configured".to_string()),
        }
    }

    /// Every desk's case tag, for threading.
    /// The desk a queue belongs to.
    pub fn queue_desk(&self, queue: &str) -> Option<&DeskConfig> {
        let q = self.queues.iter().find(|q| q.name.get_ref() == queue)?;
        self.desk(q.desk.get_ref())
    }

    pub fn desk_tags(&self) -> Vec<String> {
        self.desks.iter().map(|d| d.tag.clone()).collect()
    }

    /// The database URL (which `TRIAGED_DATABASE_URL` may set) names a known
    /// backend; the problem shows the URL redacted.
    pub fn check_database_url(&self) -> Option<Problem> {
        let url = &self.store.database_url;
        let known = url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://");
        (!known).then(|| Problem {
            file: self.source.clone(),
            line: 0,
            reason: format!(
                "store.database_url {:?}: unsupported scheme; use sqlite://PATH or postgres://...",
                redact_url(url)
            ),
        })
    }

    /// Problems that only show when the environment is consulted: passwords.
    pub fn check_secrets(&self) -> Vec<Problem> {
        let smtp = self
            .smtp
            .as_ref()
            .and_then(|s| s.password().err())
            .map(|reason| Problem {
                file: self.source.clone(),
                line: self.smtp_line,
                reason: format!("smtp: {reason}"),
            });
        self.mailboxes
            .iter()
            .filter_map(|m| {
                let s = m.imap.as_ref()?;
                s.password().err().map(|reason| Problem {
                    file: self.source.clone(),
                    line: m.line,
                    reason: format!("mailbox {:?}: {reason}", m.name),
                })
            })
            .chain(smtp)
            .collect()
    }

    /// Problems of the spools `triaged deliver` writes to (only mailboxes
    /// with `spool`): each must be a folder this user can write in, or one
    /// it can create (`check::spool_problem`). At the line of its mailbox.
    pub fn check_spools(&self) -> Vec<Problem> {
        self.mailboxes
            .iter()
            .filter_map(|m| {
                let spool = m.spool.as_ref()?;
                check::spool_problem(spool).map(|why| Problem {
                    file: self.source.clone(),
                    line: m.line,
                    reason: format!("mailbox {:?}: spool {}: {why}", m.name, spool.display()),
                })
            })
            .collect()
    }

    /// The desk's team as configured (addresses and bare domains); empty for
    /// an unknown desk.
    pub fn desk_team(&self, desk: &str) -> &[String] {
        self.desk(desk).map(|d| d.team.as_slice()).unwrap_or(&[])
    }

    /// Whether `address` belongs to the desk's team: named in it, or at a
    /// domain it names (exactly that domain). Case-insensitive.
    pub fn is_team_member(&self, desk: &str, address: &str) -> bool {
        crate::commands::in_team(address, self.desk_team(desk))
    }

    /// Whether `address` is internal to the deployment: one of
    /// [`Config::own_addresses`], a desk's comment address, or on any desk's
    /// team. Internal addresses are never shown to customers.
    pub fn is_internal(&self, address: &str) -> bool {
        let lower = address.to_ascii_lowercase();
        self.own_addresses().contains(&lower)
            || self.desks.iter().any(|d| {
                crate::commands::in_team(address, &d.team)
                    || d.comment_address
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(address))
            })
    }

    /// Every address that belongs to the deployment itself: desks' addresses,
    /// managers, on-call, integrators, mailboxes and queue lists, lower-case. Mail from
    /// them is never acknowledged, and they are never shown to customers.
    pub fn own_addresses(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .desks
            .iter()
            .flat_map(|d| {
                d.addresses
                    .iter()
                    .chain(&d.managers)
                    .chain(&d.integrators)
                    .chain(&d.oncall)
            })
            .chain(self.mailboxes.iter().map(|m| &m.address))
            .chain(self.queues.iter().flat_map(|q| &q.notify))
            .map(|a| a.to_ascii_lowercase())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// A `sqlite:` URL with a relative file made relative to `base`; any other
/// URL (PostgreSQL, an absolute path, `:memory:`) as it is.
pub fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    let Some((scheme, rest)) = url
        .strip_prefix("sqlite://")
        .map(|r| ("sqlite://", r))
        .or_else(|| url.strip_prefix("sqlite:").map(|r| ("sqlite:", r)))
    else {
        return url.to_string();
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() || path.contains(":memory:") || Path::new(path).is_absolute() {
        return url.to_string();
    }
    let joined = base.join(path);
    match query {
        Some(q) => format!("{scheme}{}?{q}", joined.display()),
        None => format!("{scheme}{}", joined.display()),
    }
}

/// Whether a host name or address is on the loopback interface.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_parses() {
        let c = Config::parse(DEFAULT_CONFIG, "default").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.mailboxes.len() >= 4);
        assert!(c.desk_tags().contains(&"ISDA".to_string()));
    }

    #[test]
    fn commands_section_defaults_and_checks() {
        let c = Config::parse(DEFAULT_CONFIG, "default").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.commands.require_authenticated);
        assert_eq!(c.commands.trusted_authserv_ids, vec!["mx.example.edu"]);
        // Absent: on, with nothing trusted (every command refused).
        let start = DEFAULT_CONFIG.find("[commands]").unwrap_or(0);
        let end = DEFAULT_CONFIG.find("# Priority = urgency").unwrap_or(0);
        let without = format!("{}{}", &DEFAULT_CONFIG[..start], &DEFAULT_CONFIG[end..]);
        let c = Config::parse(&without, "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.commands.require_authenticated);
        assert!(c.commands.trusted_authserv_ids.is_empty());
        let bad = DEFAULT_CONFIG.replace(
            "trusted_authserv_ids = [\"mx.example.edu\"]",
            "trusted_authserv_ids = [\"mx.example.edu; dkim=pass\"]",
        );
        let e = Config::parse(&bad, "t")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("trusted_authserv_ids"), "{e}");
        let unknown = DEFAULT_CONFIG.replace(
            "require_authenticated = true",
            "require_authenticated_x = true",
        );
        assert!(Config::parse(&unknown, "t").is_err());
    }

    #[test]
    fn desk_teams_are_addresses_or_domains() {
        let c = Config::parse(DEFAULT_CONFIG, "default").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            c.desk_team("isda")
                .contains(&"jlee@example.edu".to_string())
        );
        assert!(c.desk_team("nope").is_empty());
        assert!(c.is_team_member("isda", "JLee@Example.edu"));
        assert!(!c.is_team_member("database", "jlee@example.edu"));
        assert!(c.is_internal("tkim@example.edu"));
        assert!(!c.is_internal("ann@example.org"));
        assert_eq!(c.notify.relay_requester_replies_to, RelayTo::Owner);

        let text = "[notify]\nrelay_requester_replies_to = \"team\"\nmax_relayed_attachment_bytes = 5\n[[desks]]\nname = \"d\"\ntag = \"D\"\nteam = [\"ops.example.edu\", \"a@x.example\"]\ncomment_address = \"d-notes@x.example\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n[[mailboxes]]\nname = \"m\"\naddress = \"m@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n";
        let c = Config::parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.is_team_member("d", "anyone@ops.example.edu"));
        assert!(!c.is_team_member("d", "anyone@sub.ops.example.edu"));
        assert!(!c.is_team_member("d", "b@x.example"));
        assert!(c.is_internal("d-notes@x.example"));
        assert_eq!(c.notify.relay_requester_replies_to, RelayTo::Team);
        assert_eq!(c.notify.max_relayed_attachment_bytes, 5);

        let bad = "[[desks]]\nname = \"d\"\ntag = \"D\"\nteam = [\"nodot\", \"@x.example\"]\ncomment_address = \"notes\"\n";
        let e = Config::parse(bad, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(e.contains("team entry \"nodot\""), "{e}");
        assert!(e.contains("team entry \"@x.example\""), "{e}");
        assert!(e.contains("comment_address \"notes\""), "{e}");
    }

    #[test]
    fn problems_have_lines() {
        let text = "[[desks]]\nname = \"d\"\ntag = \"D\"\n\n[[queues]]\nname = \"Q\"\ndesk = \"nope\"\n\n[[mailboxes]]\nname = \"m\"\naddress = \"m@x\"\ndesk = \"d\"\ndefault_queue = \"Missing\"\n";
        let e = Config::parse(text, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("t.toml:7: queue \"Q\": unknown desk \"nope\""),
            "{e}"
        );
        assert!(
            e.contains("t.toml:13: mailbox \"m\": unknown queue \"Missing\""),
            "{e}"
        );
    }

    #[test]
    fn typo_is_refused_with_line() {
        let text = "[store]\ndatabse_url = \"x\"\n";
        let e = Config::parse(text, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("t.toml:2: unknown field `databse_url`"),
            "{e}"
        );
    }

    #[test]
    fn plain_imap_only_on_loopback() {
        let base = "[[desks]]\nname = \"d\"\ntag = \"D\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n[[mailboxes]]\nname = \"m\"\naddress = \"m@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n[mailboxes.imap]\nusername = \"u\"\npassword_env = \"P\"\nsecurity = \"plain\"\n";
        assert!(Config::parse(&format!("{base}host = \"127.0.0.1\"\n"), "t").is_ok());
        let e = Config::parse(&format!("{base}host = \"imap.example.org\"\n"), "t")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(e.contains("only allowed on loopback"), "{e}");
    }

    #[test]
    fn reopen_window_days() {
        let shipped = Config::parse(DEFAULT_CONFIG, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shipped.tickets.reopen_window_days, 30);
        assert_eq!(shipped.tickets.reopen_window_ms(), 30 * 86_400_000);
        let text = DEFAULT_CONFIG.replace("reopen_window_days = 30", "reopen_window_days = 7");
        let c = Config::parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tickets.reopen_window_ms(), 7 * 86_400_000);
        assert!(c.desk_team("nobody").is_empty());
    }

    #[test]
    fn mailboxes_are_resolved_once() {
        let text = "[imap]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\nfolder = \"Tickets\"\n[[desks]]\nname = \"d\"\ntag = \"D\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n[[mailboxes]]\nname = \"quiet\"\naddress = \"q@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n[[mailboxes]]\nname = \"m\"\naddress = \"m@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n[mailboxes.imap]\nusername = \"u\"\npassword_env = \"P\"\nport = 1143\n";
        let c = Config::parse(text, "t").unwrap_or_else(|e| panic!("{e}"));
        let Some(m) = c.mailbox("m") else {
            panic!("no mailbox m")
        };
        assert_eq!((m.desk.as_str(), m.default_queue.as_str()), ("d", "Q"));
        let Some(imap) = &m.imap else {
            panic!("no imap settings")
        };
        // Its own settings over the [imap] defaults.
        assert_eq!((imap.host.as_str(), imap.port), ("127.0.0.1", 1143));
        assert_eq!(
            (imap.username.as_str(), imap.folder.as_str()),
            ("u", "Tickets")
        );
        assert_eq!(c.mailbox("quiet").map(|m| m.imap.is_none()), Some(true));
        assert_eq!(
            c.mailbox_or_first(None).map(|m| m.name.as_str()),
            Ok("quiet")
        );
        assert_eq!(
            c.mailbox_or_first(Some("m")).map(|m| m.name.as_str()),
            Ok("m")
        );
        assert_eq!(
            c.mailbox_or_first(Some("x")).map(|m| m.name.as_str()),
            Err("unknown mailbox \"x\" (configured: quiet, m)".to_string())
        );
    }

    #[test]
    fn cluster_and_http() {
        let c = Config::parse(DEFAULT_CONFIG, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cluster.lease(), std::time::Duration::from_secs(30));
        assert!(c.http.is_none());
        let text = format!(
            "{DEFAULT_CONFIG}\n[http]\nlisten = \"127.0.0.1:9187\"\nretry_budget_secs = 5\n"
        );
        let c = Config::parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
        let http = c.http.unwrap_or_else(|| panic!("no [http]"));
        assert_eq!(http.listen.port(), 9187);
        assert_eq!(http.retry_budget_secs, 5);
        let bad = DEFAULT_CONFIG.replace("lease_secs = 30", "lease_secs = 1");
        let e = Config::parse(&bad, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("cluster.lease_secs = 1: must be between 3 and 3600"),
            "{e}"
        );
        assert!(e.starts_with("t.toml:"), "{e}");
        let bad = format!("{DEFAULT_CONFIG}\n[http]\nlisten = \"localhost:x\"\n");
        let e = Config::parse(&bad, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(e.contains("socket address"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let base = Path::new("/etc/triaged");
        for (url, want) in [
            ("sqlite://triaged.db", "sqlite:///etc/triaged/triaged.db"),
            (
                "sqlite:data/t.db?mode=rwc",
                "sqlite:/etc/triaged/data/t.db?mode=rwc",
            ),
            (
                "sqlite:///var/lib/triaged/t.db",
                "sqlite:///var/lib/triaged/t.db",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            (
                "postgres://u@h/db?sslmode=require",
                "postgres://u@h/db?sslmode=require",
            ),
        ] {
            assert_eq!(resolve_sqlite_url(url, base), want, "{url}");
        }
        let text = DEFAULT_CONFIG.replace(
            "[smtp]\nhost",
            "[smtp]\npassword_file = \"smtp.pw\"\nca_file = \"/abs/ca.pem\"\nhost",
        );
        let mut c = Config::parse(&text, "t").unwrap_or_else(|e| panic!("{e}"));
        c.resolve_paths(base);
        assert_eq!(c.store.database_url, "sqlite:///etc/triaged/triaged.db");
        assert_eq!(c.paths.rules, base.join("routing-rules"));
        assert_eq!(c.paths.templates, base.join("templates"));
        let smtp = c
            .smtp
            .as_ref()
            .map(|s| (s.password_file.clone(), s.ca_file.clone()));
        assert_eq!(
            smtp,
            Some((
                Some(base.join("smtp.pw")),
                Some(PathBuf::from("/abs/ca.pem"))
            ))
        );
        let db = c.mailbox("db-requests").and_then(|m| m.imap.as_ref());
        assert_eq!(
            db.and_then(|i| i.password_file.clone()),
            Some(PathBuf::from("/etc/triaged/db-requests.password"))
        );
    }

    #[test]
    fn late_problems_point_at_their_line() {
        let text = "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\npassword_env = \"TRIAGED_TEST_NO_SUCH_VAR_1\"\n\n[[desks]]\nname = \"d\"\ntag = \"D\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n\n[[mailboxes]]\nname = \"a\"\naddress = \"a@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n\n[[mailboxes]]\nname = \"b\"\naddress = \"b@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n[mailboxes.imap]\nhost = \"127.0.0.1\"\nsecurity = \"plain\"\nusername = \"u\"\npassword_file = \"/nonexistent/triaged.pw\"\n";
        let c = Config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let p: Vec<String> = c.check_secrets().iter().map(|p| p.to_string()).collect();
        assert!(
            p.iter()
                .any(|p| p.starts_with("t.toml:20: mailbox \"b\": cannot read password file")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("t.toml:1: smtp: environment variable")),
            "{p:?}"
        );
    }

    #[test]
    fn calendar_problems_point_at_the_value() {
        let text = "[[desks]]\nname = \"d\"\ntag = \"D\"\ntime_zone = \"Mars/Olympus\"\nholidays = [\"2026-12-25\",\n  \"Dec 26\"]\n[desks.hours]\nmon = [\"08:00-12:00\"]\ntue = [\"08:00-7:00\"]\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n[[mailboxes]]\nname = \"m\"\naddress = \"m@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n";
        let e = Config::parse(text, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(e.contains("t.toml:4: desk \"d\": unknown time zone"), "{e}");
        assert!(
            e.contains("t.toml:6: desk \"d\": holiday \"Dec 26\""),
            "{e}"
        );
        assert!(e.contains("t.toml:9: desk \"d\": hours.tue:"), "{e}");
    }

    #[test]
    fn every_address_is_checked() {
        let huge = "a".repeat(100 * 1024);
        let text = format!(
            "[[desks]]\nname = \"d\"\ntag = \"D\"\naddresses = [\"ok@x.org\", \"not an address\"]\nmanagers = [\"{huge}@x.org\"]\ncomment_address = \"@x.org\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\nnotify = [\"list@x.org\", \"list\"]\n[[mailboxes]]\nname = \"m\"\naddress = \"m@\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n"
        );
        let e = Config::parse(&text, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("t.toml:4: desk \"d\": addresses: \"not an address\" is not an address"),
            "{e}"
        );
        assert!(e.contains("t.toml:5: desk \"d\": managers:"), "{e}");
        assert!(e.contains("at most 254"), "{e}");
        assert!(
            e.len() < 2000,
            "a huge address is not repeated: {} bytes",
            e.len()
        );
        assert!(
            e.contains("t.toml:6: desk \"d\": comment_address \"@x.org\""),
            "{e}"
        );
        assert!(
            e.contains("t.toml:10: queue \"Q\": notify: \"list\""),
            "{e}"
        );
        assert!(
            e.contains("t.toml:13: mailbox \"m\": address: \"m@\""),
            "{e}"
        );
    }

    #[test]
    fn sla_section_and_oncall() {
        let c = Config::parse(DEFAULT_CONFIG, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sla.warning_share, 0.75);
        assert_eq!(c.sla.tick_secs, 30);
        assert!(c.sla.pause_when_stalled);
        assert_eq!(c.sla.daily_status_at, "09:00");
        assert!(c.sla.levels.is_empty());
        assert_eq!(
            c.desk("isda").map(|d| d.oncall.clone()),
            Some(vec!["isda-oncall@example.edu".to_string()])
        );
        assert!(
            c.own_addresses()
                .contains(&"isda-oncall@example.edu".to_string())
        );
        // The commented examples, switched on.
        let on = DEFAULT_CONFIG
            .replace(
                "    # { at_share = 2.0, to = [\"isda-director@example.edu\"] },",
                "    { at_share = 2.0, to = [\"isda-director@example.edu\"] },",
            )
            .replace("# critical = \"8h\"", "critical = \"8h\"")
            .replace(
                "    # { desk = \"database\", kind = \"incident\", target = \"4h\" },",
                "    { desk = \"database\", kind = \"incident\", target = \"4h\" },",
            );
        let c = Config::parse(&on, "t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sla.levels.len(), 1);
        let r = &c.sla.resolution;
        use crate::priority::{Kind, Priority};
        assert_eq!(
            r.target("isda", "Admin", Kind::Service, Priority::Critical),
            Some(std::time::Duration::from_secs(8 * 3600))
        );
        assert_eq!(
            r.target("database", "Database", Kind::Incident, Priority::Low),
            Some(std::time::Duration::from_secs(4 * 3600))
        );
        assert_eq!(
            r.target("isda", "Admin", Kind::Service, Priority::Low),
            None
        );
        // Problems are reported with their line.
        let bad = DEFAULT_CONFIG
            .replace("warning_share = 0.75", "warning_share = 1.5")
            .replace(
                "oncall = [\"isda-oncall@example.edu\"]",
                "oncall = [\"isda-oncall\"]",
            );
        let e = Config::parse(&bad, "t.toml")
            .err()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(e.contains("sla.warning_share 1.5"), "{e}");
        assert!(e.contains("\"isda-oncall\" is not an address"), "{e}");
        assert!(!e.contains("t.toml:0:"), "{e}");
    }

    #[test]
    fn secret_never_prints() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn toml_refusals_always_say_why() {
        let p = match Config::parse("#\0", "t.toml") {
            Err(p) => p,
            Ok(_) => panic!("accepted a NUL"),
        };
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].line, 1);
        assert!(p.0[0].reason.contains("U+0000"), "{:?}", p.0[0].reason);
        let p = match Config::parse("a = 1\n# x\u{1}y\n", "t.toml") {
            Err(p) => p,
            Ok(_) => panic!("accepted a control character"),
        };
        assert_eq!(p.0[0].line, 2);
        assert!(!p.0[0].reason.is_empty());
    }
}
