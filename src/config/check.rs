//! `Config::parse` in steps: each section of the file is checked (and, for
//! desks and mailboxes, resolved) in the order of the file, and every problem
//! is collected as `file:line: reason`.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::{
    AfterIngest, ClusterConfig, ConfigFile, DeskConfig, ImapConfig, ImapSettings, Mailbox,
    QueueConfig, Security, is_loopback,
};
use crate::calendar::Calendar;
use crate::problem::{Problem, Problems, line_of, toml_reason};

/// The problems found in one config text.
pub(super) struct Found<'a> {
    pub(super) text: &'a str,
    file: &'a str,
    problems: Vec<Problem>,
}

impl<'a> Found<'a> {
    pub(super) fn new(text: &'a str, file: &'a str) -> Found<'a> {
        Found {
            text,
            file,
            problems: Vec::new(),
        }
    }

    /// A problem at a byte range of the text (its line is the start's).
    fn at(&mut self, span: Range<usize>, reason: String) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            line: line_of(self.text, span.start),
            reason,
        });
    }

    /// Where `value` is written (as a TOML string) at or after `from`, else `from`.
    fn near(&self, from: usize, value: &str) -> Range<usize> {
        let quoted = format!("{value:?}");
        let at = self
            .text
            .get(from..)
            .and_then(|rest| rest.find(&quoted))
            .map_or(from, |i| from + i);
        at..at
    }

    /// A problem unless `address` is an address; `what` says whose it is,
    /// found at or after `from`.
    fn address(&mut self, from: usize, what: &str, address: &str) {
        if let Some(why) = crate::parse::address_problem(address) {
            let at = self.near(from, address);
            self.at(
                at,
                format!("{what}: {:?} is not an address: it {why}", cut(address)),
            );
        }
    }

    /// A problem in a section of the text (`[priority`), or at the top.
    fn in_section(&mut self, header: &str, reason: String) {
        let at = self.text.find(header).unwrap_or(0);
        self.at(at..at, reason);
    }

    /// `Ok` when nothing was found.
    pub(super) fn finish(self) -> Result<(), Problems> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(self.problems))
        }
    }
}

/// An operator's value as a problem quotes it: at most 80 characters.
fn cut(value: &str) -> String {
    crate::text::truncate(value, 80)
}

/// Where a calendar problem of desk `d` points: the holiday, the time zone,
/// the interval or day of `[hours]` it names; else the desk's name.
fn calendar_span(text: &str, d: &DeskConfig, reason: &str) -> Range<usize> {
    if reason.starts_with("unknown time zone") && d.time_zone.span() != (0..0) {
        return d.time_zone.span();
    }
    if let Some(h) = d
        .holidays
        .iter()
        .find(|h| reason.starts_with(&format!("holiday {:?}", h.get_ref())))
    {
        return h.span();
    }
    if let (Some(hours), Some(rest)) = (&d.hours, reason.strip_prefix("hours.")) {
        let span = hours.span();
        let body = text.get(span.clone()).unwrap_or("");
        let day = rest.split(':').next().unwrap_or("");
        // The interval it quotes, else the day's key, else the table.
        let quoted = rest
            .split_once(": \"")
            .and_then(|(_, q)| q.split_once('"'))
            .map(|(q, _)| format!("\"{q}\""));
        let found = quoted
            .as_deref()
            .and_then(|q| body.find(q))
            .or_else(|| body.find(day));
        return match found {
            Some(i) => span.start + i..span.start + i,
            None => span,
        };
    }
    d.name.span()
}

/// The text as TOML, in the shape of the file; a refusal is one problem.
pub(super) fn read(text: &str, file: &str) -> Result<ConfigFile, Problems> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        Problems(vec![Problem {
            file: file.to_string(),
            line,
            reason: toml_reason(&e, text),
        }])
    })
}

/// Desks: unique names, well-formed tags, valid calendars. Returns each
/// desk's business-hours calendar, by desk name.
pub(super) fn desks(desks: &[DeskConfig], found: &mut Found) -> BTreeMap<String, Calendar> {
    let mut names = HashSet::new();
    let mut calendars = BTreeMap::new();
    for d in desks {
        let name = d.name.get_ref();
        if !names.insert(name.as_str()) {
            found.at(d.name.span(), format!("desk {name:?} is defined twice"));
        }
        if d.tag.is_empty()
            || !d
                .tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            found.at(
                d.name.span(),
                format!(
                    "desk {name:?}: tag {:?} must be letters, digits, '_', '.' or '-'",
                    d.tag
                ),
            );
        }
        for t in &d.team {
            let (local, domain) = match t.rsplit_once('@') {
                Some((l, d)) => (Some(l), d),
                None => (None, t.as_str()),
            };
            let domain_ok = domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
            if !domain_ok || local.is_some_and(|l| l.is_empty() || l.contains(char::is_whitespace))
            {
                found.at(
                    d.name.span(),
                    format!("desk {name:?}: team entry {t:?} is neither an address nor a domain"),
                );
            }
        }
        if let Some(c) = &d.comment_address
            && let Some(why) = crate::parse::address_problem(c)
        {
            let at = found.near(d.name.span().start, c);
            found.at(
                at,
                format!(
                    "desk {name:?}: comment_address {:?} is not an address: it {why}",
                    cut(c)
                ),
            );
        }
        for (key, list) in [
            ("addresses", &d.addresses),
            ("managers", &d.managers),
            ("integrators", &d.integrators),
        ] {
            for a in list {
                found.address(d.name.span().start, &format!("desk {name:?}: {key}"), a);
            }
        }
        let calendar = crate::calendar::CalendarConfig {
            time_zone: d.time_zone.get_ref().clone(),
            hours: d
                .hours
                .as_ref()
                .map(|h| h.get_ref().clone())
                .unwrap_or_default(),
            holidays: d.holidays.iter().map(|h| h.get_ref().clone()).collect(),
        };
        match Calendar::from_config(&calendar) {
            Ok(c) => {
                calendars.insert(name.clone(), c);
            }
            Err(reasons) => {
                for r in reasons {
                    let at = calendar_span(found.text, d, &r);
                    found.at(at, format!("desk {name:?}: {r}"));
                }
            }
        }
    }
    calendars
}

/// Queues: unique names, a known desk, a known default kind.
pub(super) fn queues(queues: &[QueueConfig], desks: &HashSet<&str>, found: &mut Found) {
    let mut names = HashSet::new();
    for q in queues {
        let name = q.name.get_ref();
        if !names.insert(name.as_str()) {
            found.at(q.name.span(), format!("queue {name:?} is defined twice"));
        }
        if !desks.contains(q.desk.get_ref().as_str()) {
            found.at(
                q.desk.span(),
                format!("queue {name:?}: unknown desk {:?}", q.desk.get_ref()),
            );
        }
        for a in &q.notify {
            found.address(q.name.span().start, &format!("queue {name:?}: notify"), a);
        }
        if let Some(k) = &q.default_kind
            && k.get_ref().parse::<crate::priority::Kind>().is_err()
        {
            found.at(
                k.span(),
                format!("queue {name:?}: unknown kind {:?}", k.get_ref()),
            );
        }
    }
}

/// Mailboxes: unique names, a known desk and queue, and their IMAP settings
/// resolved over the `[imap]` defaults. Each is resolved once, here.
pub(super) fn mailboxes(
    raw: &ConfigFile,
    desks: &HashSet<&str>,
    queues: &HashSet<&str>,
    found: &mut Found,
) -> Vec<Mailbox> {
    let mut names = HashSet::new();
    let mut resolved = Vec::with_capacity(raw.mailboxes.len());
    for m in &raw.mailboxes {
        let name = m.name.get_ref();
        if !names.insert(name.as_str()) {
            found.at(m.name.span(), format!("mailbox {name:?} is defined twice"));
        }
        found.address(
            m.name.span().start,
            &format!("mailbox {name:?}: address"),
            &m.address,
        );
        if !desks.contains(m.desk.get_ref().as_str()) {
            found.at(
                m.desk.span(),
                format!("mailbox {name:?}: unknown desk {:?}", m.desk.get_ref()),
            );
        }
        if !queues.contains(m.default_queue.get_ref().as_str()) {
            found.at(
                m.default_queue.span(),
                format!(
                    "mailbox {name:?}: unknown queue {:?}",
                    m.default_queue.get_ref()
                ),
            );
        }
        let imap = m
            .imap
            .as_ref()
            .and_then(|own| match imap(&own.or(&raw.imap)) {
                Ok(s) => Some(s),
                Err(reason) => {
                    found.at(m.name.span(), format!("mailbox {name:?}: {reason}"));
                    None
                }
            });
        resolved.push(Mailbox {
            line: line_of(found.text, m.name.span().start),
            name: name.clone(),
            address: m.address.clone(),
            desk: m.desk.get_ref().clone(),
            default_queue: m.default_queue.get_ref().clone(),
            imap,
            spool: m.spool.clone(),
        });
    }
    resolved
}

/// `[smtp]`: plain only on loopback.
pub(super) fn smtp(smtp: Option<&Spanned<super::SmtpConfig>>, found: &mut Found) {
    if let Some(smtp) = smtp
        && smtp.get_ref().security == Security::Plain
        && !is_loopback(&smtp.get_ref().host)
    {
        found.at(
            smtp.span(),
            format!(
                "smtp.security = \"plain\" is only allowed on loopback, not {:?}",
                smtp.get_ref().host
            ),
        );
    }
}

/// `[commands]`: authserv-ids are tokens (RFC 8601 `value`: no white space,
/// no `;`). An empty list with `require_authenticated` is allowed (every
/// command is then refused, with that reason, until one is named).
pub(super) fn commands(c: Option<&Spanned<super::CommandsConfig>>, found: &mut Found) {
    let Some(c) = c else {
        return;
    };
    let cfg = c.get_ref();
    for id in &cfg.trusted_authserv_ids {
        let t = id.trim();
        if t.is_empty()
            || t.len() > 255
            || t.chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || ch == ';')
        {
            found.at(
                c.span(),
                format!("commands.trusted_authserv_ids: {id:?} is not an authserv-id (a host name, no spaces or ';')"),
            );
        }
    }
}

/// `[priority]` and `[targets]`, when given, name only known queues and desks.
pub(super) fn priority_and_targets(raw: &ConfigFile, found: &mut Found) {
    let queue_list: Vec<&str> = raw
        .queues
        .iter()
        .map(|q| q.name.get_ref().as_str())
        .collect();
    let desk_list: Vec<&str> = raw
        .desks
        .iter()
        .map(|d| d.name.get_ref().as_str())
        .collect();
    if let Some(p) = &raw.priority {
        for reason in p.check(&queue_list) {
            found.in_section("[priority", format!("priority: {reason}"));
        }
    }
    if let Some(t) = &raw.targets {
        for reason in t.check(&desk_list, &queue_list) {
            found.in_section("[targets", format!("targets: {reason}"));
        }
    }
}

/// `[sla]` and each desk's `oncall`: see `SlaConfig::check`.
pub(super) fn sla(raw: &ConfigFile, found: &mut Found) {
    let queue_list: Vec<&str> = raw
        .queues
        .iter()
        .map(|q| q.name.get_ref().as_str())
        .collect();
    let desk_list: Vec<&str> = raw
        .desks
        .iter()
        .map(|d| d.name.get_ref().as_str())
        .collect();
    for reason in raw.sla.check(&desk_list, &queue_list) {
        found.in_section("[sla", reason);
    }
    for d in &raw.desks {
        for a in d.oncall.iter().chain(&d.managers) {
            if !super::sla::is_address(a) {
                found.at(
                    d.name.span(),
                    format!("desk {:?}: {a:?} is not an address", d.name.get_ref()),
                );
            }
        }
    }
}

/// What a deployment cannot run without.
pub(super) fn essentials(raw: &ConfigFile, found: &mut Found) {
    if raw.desks.is_empty() {
        found.at(0..0, "no [[desks]] defined".to_string());
    }
    if raw.mailboxes.is_empty() {
        found.at(0..0, "no [[mailboxes]] defined".to_string());
    }
    if raw.ingest.batch_size == 0 {
        found.at(0..0, "ingest.batch_size must be at least 1".to_string());
    }
}

/// One mailbox's IMAP settings, defaults applied; `Err` says what is wrong.
fn imap(c: &ImapConfig) -> Result<ImapSettings, String> {
    let host = c.host.clone().ok_or("imap.host is missing")?;
    let security = c.security.unwrap_or(Security::Tls);
    if security == Security::Plain && !is_loopback(&host) {
        return Err(format!(
            "imap.security = \"plain\" is only allowed on loopback, not {host:?}"
        ));
    }
    let port = c.port.unwrap_or(match security {
        Security::Tls => 993,
        Security::Starttls | Security::Plain => 143,
    });
    let username = c.username.clone().ok_or("imap.username is missing")?;
    if c.password_env.is_none() && c.password_file.is_none() {
        return Err("imap needs password_env or password_file".to_string());
    }
    let fetch_batch = c.fetch_batch;
    if fetch_batch == Some(0) {
        return Err("imap.fetch_batch must be at least 1".to_string());
    }
    Ok(ImapSettings {
        host,
        port,
        security,
        username,
        password_env: c.password_env.clone(),
        password_file: c.password_file.clone(),
        folder: c.folder.clone().unwrap_or_else(|| "INBOX".to_string()),
        after: c.after.unwrap_or(AfterIngest::Seen),
        processed_folder: c
            .processed_folder
            .clone()
            .unwrap_or_else(|| "Processed".to_string()),
        idle: c.idle.unwrap_or(true),
        poll_interval: std::time::Duration::from_secs(c.poll_interval_secs.unwrap_or(60).max(1)),
        idle_timeout: std::time::Duration::from_secs(c.idle_timeout_secs.unwrap_or(25 * 60).max(1)),
        fetch_batch,
        ca_file: c.ca_file.clone(),
    })
}

/// `[cluster]`: a lease long enough to be renewed (every third of it) over
/// a slow database, short enough to take over a dead daemon's work.
pub(super) fn cluster(cluster: Option<&Spanned<ClusterConfig>>, found: &mut Found) {
    if let Some(c) = cluster
        && !(3..=3600).contains(&c.get_ref().lease_secs)
    {
        found.at(
            c.span(),
            format!(
                "cluster.lease_secs = {}: must be between 3 and 3600",
                c.get_ref().lease_secs
            ),
        );
    }
}

/// What keeps `triaged deliver` from spooling into `spool`, if anything. It
/// creates the folder and its `tmp/`, `new/` and `cur/` when missing, writes
/// into `tmp/` and renames into `new/` (where the daemon removes from): so
/// the nearest existing folder of those must be writable (write and search)
/// by this user, and each of them that exists must be a folder.
pub(super) fn spool_problem(spool: &Path) -> Option<String> {
    let top = match std::fs::metadata(spool) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => return Some("is not a folder".to_string()),
        Err(e) if missing(&e) => false,
        Err(e) => return Some(format!("cannot be looked at: {e}")),
    };
    if !top {
        // Deliver would create it: the nearest folder that exists takes it.
        let mut parent = spool.parent();
        while let Some(p) = parent {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            match std::fs::metadata(p) {
                Ok(m) if m.is_dir() => {
                    return writable(p).err().map(|e| {
                        format!("cannot be created: {} is not writable: {e}", p.display())
                    });
                }
                Ok(_) => {
                    return Some(format!(
                        "cannot be created: {} is not a folder",
                        p.display()
                    ));
                }
                // "." is the last: its parent is "" again.
                Err(e) if missing(&e) => parent = p.parent().filter(|_| p != Path::new(".")),
                Err(e) => {
                    return Some(format!(
                        "cannot be created: {} cannot be looked at: {e}",
                        p.display()
                    ));
                }
            }
        }
        return Some("cannot be created: no folder above it exists".to_string());
    }
    let mut creates = false;
    for sub in ["tmp", "new", "cur"] {
        let dir = spool.join(sub);
        match std::fs::metadata(&dir) {
            Ok(m) if !m.is_dir() => return Some(format!("{sub}/ is not a folder")),
            Ok(_) if sub != "cur" => {
                if let Err(e) = writable(&dir) {
                    return Some(format!("{sub}/ is not writable: {e}"));
                }
            }
            Ok(_) => {}
            Err(e) if missing(&e) => creates = true,
            Err(e) => return Some(format!("{sub}/ cannot be looked at: {e}")),
        }
    }
    if creates && let Err(e) = writable(spool) {
        return Some(format!(
            "is not writable (its Maildir folders are missing): {e}"
        ));
    }
    None
}

/// Not there, or under something that is no folder (which the caller
/// finds when it looks further up).
fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Whether this user may create and remove names in the folder `dir`, as
/// the kernel decides it (access(2): permission bits, ACLs, a read-only
/// file system; root's override included), without touching it.
fn writable(dir: &Path) -> std::io::Result<()> {
    use rustix::fs::{Access, access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deployment whose second mailbox (its name at line 13) spools to `spool`.
    fn with_spool(spool: &Path) -> super::super::Config {
        let text = format!(
            "[[desks]]\nname = \"d\"\ntag = \"D\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n\
             [[mailboxes]]\nname = \"a\"\naddress = \"a@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n\
             [[mailboxes]]\nname = \"b\"\naddress = \"b@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n\
             spool = {:?}\n",
            spool.display().to_string()
        );
        super::super::Config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_spool_deliver_can_use_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Missing, with missing folders above it: deliver creates them all.
        let spool = dir.path().join("var/spool/triaged/b");
        assert_eq!(spool_problem(&spool), None);
        assert!(with_spool(&spool).check_spools().is_empty());
        // An existing Maildir, and one with only some of its folders.
        std::fs::create_dir_all(spool.join("tmp")).expect("mkdir");
        assert_eq!(spool_problem(&spool), None);
        for sub in ["new", "cur"] {
            std::fs::create_dir_all(spool.join(sub)).expect("mkdir");
        }
        assert_eq!(spool_problem(&spool), None);
        // No spool set: nothing to check.
        let text = "[[desks]]\nname = \"d\"\ntag = \"D\"\n[[queues]]\nname = \"Q\"\ndesk = \"d\"\n[[mailboxes]]\nname = \"a\"\naddress = \"a@x\"\ndesk = \"d\"\ndefault_queue = \"Q\"\n";
        let c = super::super::Config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.check_spools().is_empty());
    }

    #[test]
    fn a_spool_deliver_cannot_use_is_a_problem_at_its_mailbox() {
        // Paths that fail for root too: a folder cannot be made under a
        // file, and a file is no folder.
        let dir = tempfile::tempdir().expect("tempdir");
        let afile = dir.path().join("afile");
        std::fs::write(&afile, b"not a folder").expect("write");
        let under = afile.join("spool/b");
        let why = spool_problem(&under).unwrap_or_default();
        assert_eq!(
            why,
            format!("cannot be created: {} is not a folder", afile.display())
        );
        let problems: Vec<String> = with_spool(&under)
            .check_spools()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            problems,
            [format!(
                "t.toml:13: mailbox \"b\": spool {}: {why}",
                under.display()
            )]
        );
        assert_eq!(
            spool_problem(&afile).as_deref(),
            Some("is not a folder"),
            "the spool itself a file"
        );
        // A Maildir whose new/ (or tmp/, or cur/) is a file: deliver fails.
        for sub in ["tmp", "new", "cur"] {
            let spool = dir.path().join(format!("bad-{sub}"));
            std::fs::create_dir_all(&spool).expect("mkdir");
            std::fs::write(spool.join(sub), b"x").expect("write");
            assert_eq!(
                spool_problem(&spool),
                Some(format!("{sub}/ is not a folder")),
                "{sub}"
            );
        }
    }

    #[test]
    fn writability_is_the_kernels_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(writable(dir.path()).is_ok());
        // A regular file is not a folder one can create names in, even as root.
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").expect("write");
        assert!(writable(&f.join("x")).is_err());
        assert!(writable(&dir.path().join("missing")).is_err());
    }
}
