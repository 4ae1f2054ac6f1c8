//! IMAP as a source: one watcher task per mailbox.
//!
//! A watcher connects (implicit TLS, STARTTLS, or plain on loopback), selects
//! its folder, and takes every message above the committed cursor (the highest
//! UID done for this UIDVALIDITY), in UID order, in chunks. Each chunk is
//! committed in one transaction together with the new cursor; only then are its
//! messages flagged `\Seen` or moved. A crash between commit and flagging is
//! repaired at the next connect: everything at or below the cursor that is still
//! unflagged (or unmoved) is flagged (or moved) then. Between rounds the watcher
//! waits in IDLE when the server offers it, else polls. Errors drop the
//! connection and reconnect with exponential backoff; watchers share nothing but
//! the store, so one broken mailbox never stalls another.
//!
//! A backlog is pipelined: while one chunk commits, the next is prepared
//! (parsed, classified) on a blocking thread and the session acknowledges the
//! chunk committed before and fetches the one after; chunks grow with the
//! backlog (see [`plan_chunks`]). Acknowledgements stay after their commit and
//! in UID order; a message is marked in flight before it is prepared.
//!
//! A message that kills the process (an abort, a stack overflow) cannot stop
//! its mailbox: each chunk's UIDs are marked in flight (committed) before they
//! are prepared, and a later run that finds another run's marker above the
//! cursor takes those messages one at a time and, after repeated deaths, sets
//! the message aside in quarantine without parsing it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_imap::Session;
use futures::TryStreamExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{AfterIngest, ImapSettings, Mailbox, Secret, Security};
use crate::metrics::{self, SessionState};
use crate::pipeline::{Action, Origin, Outcome, Pipeline, Prepared};
use crate::store::{Cursor, InFlight, StoreError};

/// The byte stream under an IMAP session.
pub type ImapStream = Either<TcpStream, TlsStream<TcpStream>>;
pub type ImapSession = Session<ImapStream>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// While the store cannot commit (disk full), the mailbox waits at most this
/// long between attempts, so that it resumes soon after space is freed.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(30);

/// Errors of one IMAP session; all end the session, which is then retried.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("login as {0} refused: {1}")]
    Login(String, String),
    #[error("folder {0}: server gave no UIDVALIDITY")]
    NoUidValidity(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("IMAP connection closed by server")]
    Closed,
    #[error("{0}")]
    Internal(String),
}

/// Opens an authenticated session.
pub async fn connect(s: &ImapSettings, password: &Secret) -> Result<ImapSession, ImapError> {
    let addr = format!("{}:{}", s.host, s.port);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| ImapError::ConnectTimeout(addr.clone()))?
        .map_err(|e| ImapError::Connect(addr.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let stream: ImapStream = match s.security {
        Security::Plain => Either::Left(tcp),
        Security::Tls => Either::Right(tls_wrap(s, tcp).await?),
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            read_greeting(&mut client).await?;
            client.run_command_and_check_ok("STARTTLS", None).await?;
            Either::Right(tls_wrap(s, client.into_inner()).await?)
        }
    };
    let mut client = async_imap::Client::new(stream);
    if s.security != Security::Starttls {
        read_greeting(&mut client).await?;
    }
    // A NO (or BAD) answer to LOGIN is the server refusing the credentials;
    // anything else (a dropped connection) is an ordinary session error.
    client
        .login(&s.username, password.expose())
        .await
        .map_err(|(e, _)| match e {
            async_imap::error::Error::No(words) | async_imap::error::Error::Bad(words) => {
                ImapError::Login(s.username.clone(), words)
            }
            other => ImapError::Imap(other),
        })
}

async fn read_greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), ImapError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Closed),
        Err(e) => Err(ImapError::Imap(e.into())),
    }
}

async fn tls_wrap(s: &ImapSettings, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ImapError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let host = s.host.as_str();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &s.ca_file {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ImapError::Tls(format!("ca_file {}: {e}", file.display())))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ImapError::Tls(format!(
                "ca_file {}: no usable certificate",
                file.display()
            )));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ImapError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ImapError::Tls(format!("{host:?}: {e}")))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Tls(e.to_string()))
}

/// One mailbox's watcher.
pub struct Watcher {
    pipeline: Pipeline,
    /// The mailbox watched, as the configuration resolved it.
    mailbox: Mailbox,
    /// Its IMAP settings (`mailbox.imap`, known to be there).
    settings: ImapSettings,
    password: Secret,
    shutdown: CancellationToken,
}

impl Watcher {
    /// The watcher of a mailbox; `Ok(None)` when it has no IMAP settings (it
    /// is not watched), `Err` when its password cannot be read.
    pub fn new(
        pipeline: Pipeline,
        mailbox: &Mailbox,
        shutdown: CancellationToken,
    ) -> Result<Option<Watcher>, String> {
        let Some(settings) = mailbox.imap.clone() else {
            return Ok(None);
        };
        let password = settings.password()?;
        Ok(Some(Watcher {
            pipeline,
            mailbox: mailbox.clone(),
            settings,
            password,
            shutdown,
        }))
    }

    /// Runs until shutdown, reconnecting with backoff after every failure.
    ///
    /// When the store lacks a resource (disk full, I/O error, read-only), the
    /// mailbox is paused: nothing was acknowledged, the session ends, and the
    /// same messages are taken again after a growing delay (at most
    /// [`MAX_STORE_BACKOFF`]) until the store can commit them.
    ///
    /// Each state of the session is reported to [`metrics`]: connecting, up,
    /// retrying, auth_failed (a refused login: logged at ERROR the first
    /// time, then again only at the 2nd, 4th, 8th... refusal in a row, as
    /// the retries back off), store_paused.
    pub async fn run(self) {
        let name = self.mailbox.name.as_str();
        let mut backoff = Duration::from_secs(1);
        let mut refusals: u32 = 0;
        let mut first = true;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            // A reconnect keeps the state of the failure (retrying,
            // auth_failed, store_paused) until it succeeds or fails anew.
            if first {
                metrics::session(name, SessionState::Connecting);
            } else {
                metrics::reconnect(name);
            }
            first = false;
            let mut progressed = false;
            match self.session(&mut progressed).await {
                Ok(()) => return,
                Err(ImapError::Login(user, words)) => {
                    metrics::session(name, SessionState::AuthFailed);
                    refusals = refusals.saturating_add(1);
                    if refusals.is_power_of_two() {
                        error!(mailbox = %name, user = %user, server_said = %words, refusals,
                            retry_in_ms = backoff.as_millis() as u64,
                            "IMAP login refused: check the mailbox's username and password; retrying with backoff");
                    } else {
                        debug!(mailbox = %name, refusals, "IMAP login refused again");
                    }
                }
                Err(ImapError::Store(e)) if e.is_resource() => {
                    metrics::session(name, SessionState::StorePaused);
                    // Connecting again is no progress while the store is down.
                    backoff = backoff.min(MAX_STORE_BACKOFF);
                    let counts = crate::store::metrics();
                    error!(mailbox = %self.mailbox.name, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        store_resource_errors = counts.resource_errors,
                        "store cannot commit (disk full, I/O error or read-only); mailbox paused, nothing acknowledged");
                }
                Err(e) => {
                    metrics::session(name, SessionState::Retrying);
                    if progressed {
                        backoff = Duration::from_secs(1);
                        refusals = 0;
                    }
                    warn!(mailbox = %self.mailbox.name, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "mailbox session ended; reconnecting");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life. `Ok` only when asked to shut down.
    async fn session(&self, progressed: &mut bool) -> Result<(), ImapError> {
        let s = &self.settings;
        let mut session = connect(s, &self.password).await?;
        let selected = session.select(&s.folder).await?;
        let uidvalidity = selected
            .uid_validity
            .ok_or_else(|| ImapError::NoUidValidity(s.folder.clone()))?;
        let caps = session.capabilities().await?;
        let can_idle = s.idle && caps.has_str("IDLE");
        let can_move = caps.has_str("MOVE");
        if s.after == AfterIngest::Move {
            // Fails harmlessly when the folder exists.
            let _ = session.create(&s.processed_folder).await;
        }
        info!(mailbox = %self.mailbox.name, host = %s.host, security = ?s.security, folder = %s.folder, uidvalidity,
            idle = can_idle, "mailbox connected");
        *progressed = true;
        metrics::session(&self.mailbox.name, SessionState::Up);

        let mut cursor = match self.pipeline.store().cursor(&self.mailbox.name).await? {
            Some(c) if c.uidvalidity == uidvalidity => c,
            previous => {
                if let Some(p) = previous {
                    warn!(mailbox = %self.mailbox.name, old = p.uidvalidity, new = uidvalidity,
                        "UIDVALIDITY changed; rescanning the folder (duplicates are recognised by Message-ID)");
                }
                let c = Cursor {
                    mailbox: self.mailbox.name.clone(),
                    uidvalidity,
                    last_uid: 0,
                };
                self.pipeline.store().set_cursor(&c).await?;
                c
            }
        };
        self.repair(&mut session, &cursor, can_move).await?;

        loop {
            drain(&session);
            let new = self.new_uids(&mut session, cursor.last_uid).await?;
            self.take_round(&mut session, &mut cursor, &new, can_move)
                .await?;
            if self.shutdown.is_cancelled() {
                let _ = session.logout().await;
                info!(mailbox = %self.mailbox.name, "mailbox closed for shutdown");
                return Ok(());
            }
            if !new.is_empty() {
                continue;
            }
            if can_idle {
                session = self.idle(session).await?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(s.poll_interval) => {}
                    _ = self.shutdown.cancelled() => {}
                }
                session.noop().await?;
            }
        }
    }

    /// UIDs above the cursor, ascending.
    async fn new_uids(
        &self,
        session: &mut ImapSession,
        last_uid: u32,
    ) -> Result<Vec<u32>, ImapError> {
        let found = session
            .uid_search(format!("UID {}:*", last_uid.saturating_add(1)))
            .await?;
        // `n:*` always matches the highest UID, even one below n.
        let uids: BTreeSet<u32> = found.into_iter().filter(|&u| u > last_uid).collect();
        // A round takes at most ROUND_MAX; the next SEARCH finds the rest.
        Ok(uids.into_iter().take(ROUND_MAX).collect())
    }

    /// Takes the new UIDs of one round (ascending).
    ///
    /// Up to the last message another run died holding, chunk by chunk as
    /// [`Watcher::take_chunk`] does; the rest pipelined, three chunks in
    /// hand at most: while chunk N commits, chunk N+1 (marked in flight
    /// first) is prepared on a blocking thread, and the session acknowledges
    /// chunk N-1 and then fetches chunk N+2. Each chunk is acknowledged only
    /// after its commit returned, in UID order, as in the plain path.
    async fn take_round(
        &self,
        session: &mut ImapSession,
        cursor: &mut Cursor,
        new: &[u32],
        can_move: bool,
    ) -> Result<(), ImapError> {
        let (Some(&first), Some(&last)) = (new.first(), new.last()) else {
            return Ok(());
        };
        let priors = self.priors(cursor, first, last).await?;
        let cut = new
            .iter()
            .rposition(|uid| priors.get(uid).is_some_and(|p| p.deaths > 0))
            .map_or(0, |i| i + 1);
        let (suspect, rest) = new.split_at(cut);
        for chunk in suspect.chunks(self.settings.fetch_batch.unwrap_or(ADAPTIVE_MIN)) {
            self.take_chunk(session, cursor, chunk, can_move).await?;
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
        }
        if rest.is_empty() {
            return Ok(());
        }

        let limit = self.pipeline.config().ingest.max_message_bytes;
        let meta = metadata(session, rest).await?;
        let mut chunks = plan_chunks(rest, &meta, self.settings.fetch_batch, limit).into_iter();
        let Some(c) = chunks.next() else {
            return Ok(());
        };
        let f = fetch_bodies(session, c, &meta, limit).await?;
        self.mark(cursor, &f.uids, &priors, "batch").await?;
        let mut ready = Some(self.prepare(cursor, f).await?);
        let mut fetched = match chunks.next() {
            Some(c) => Some(fetch_bodies(session, c, &meta, limit).await?),
            None => None,
        };
        let mut unacked: Option<Vec<u32>> = None;
        while let Some(current) = ready.take() {
            let stop = self.shutdown.is_cancelled();
            let to_prepare = if stop { None } else { fetched.take() };
            let to_fetch = if stop { None } else { chunks.next() };
            let to_ack = unacked.take();
            let base = cursor.clone();
            // In hand from here until a commit moves the cursor past them.
            if let Some(f) = &to_prepare {
                self.mark(&base, &f.uids, &priors, "batch").await?;
            }
            let server = async {
                if let Some(uids) = &to_ack {
                    self.acknowledge(session, uids, can_move).await?;
                }
                match to_fetch {
                    Some(c) => fetch_bodies(session, c, &meta, limit).await.map(Some),
                    None => Ok(None),
                }
            };
            let prepare = async {
                match to_prepare {
                    Some(f) => self.prepare(&base, f).await.map(Some),
                    None => Ok(None),
                }
            };
            let uids = current.uids.clone();
            let commit = self.commit_ready(&base, current, &meta);
            let (committed, prepared, served) = tokio::join!(commit, prepare, server);
            *cursor = committed?;
            unacked = Some(uids);
            ready = prepared?;
            fetched = served?;
        }
        if let Some(uids) = unacked {
            self.acknowledge(session, &uids, can_move).await?;
        }
        Ok(())
    }

    /// What earlier runs did with the UIDs in `first..=last`, from their
    /// in-flight markers above the cursor.
    async fn priors(
        &self,
        cursor: &Cursor,
        first: u32,
        last: u32,
    ) -> Result<HashMap<u32, Prior>, ImapError> {
        Ok(self
            .pipeline
            .store()
            .in_flight(cursor, first, last)
            .await?
            .iter()
            .map(|m| (m.uid, Prior::of(m, run_id())))
            .collect())
    }

    /// Prepares a fetched chunk on a blocking thread, in UID order.
    async fn prepare(&self, cursor: &Cursor, f: Fetched) -> Result<Ready, ImapError> {
        let pipeline = self.pipeline.clone();
        let mailbox = self.mailbox.name.clone();
        let uidvalidity = cursor.uidvalidity;
        let Fetched { uids, raws, heads } = f;
        let mut prepared: Vec<(u32, Prepared)> = tokio::task::spawn_blocking(move || {
            let origin = |uid| Origin::Imap { uidvalidity, uid };
            raws.into_iter()
                .map(|(uid, raw)| (uid, pipeline.prepare(&mailbox, origin(uid), raw)))
                .chain(heads.into_iter().map(|(uid, head, size)| {
                    (
                        uid,
                        pipeline.prepare_oversized(&mailbox, origin(uid), head, size),
                    )
                }))
                .collect()
        })
        .await
        .map_err(|e| ImapError::Internal(format!("message preparation failed: {e}")))?;
        prepared.sort_by_key(|(uid, _)| *uid);
        let (taken, batch) = prepared.into_iter().unzip();
        Ok(Ready { uids, taken, batch })
    }

    /// Commits a prepared chunk together with the cursor past its last UID;
    /// returns that cursor. Nothing is acknowledged here.
    async fn commit_ready(
        &self,
        cursor: &Cursor,
        ready: Ready,
        meta: &HashMap<u32, Meta>,
    ) -> Result<Cursor, ImapError> {
        // A UID that vanished between SEARCH and FETCH (expunged meanwhile) is simply
        // passed; the cursor still moves past the whole chunk.
        let next = Cursor {
            last_uid: ready
                .uids
                .iter()
                .copied()
                .max()
                .unwrap_or(cursor.last_uid)
                .max(cursor.last_uid),
            ..cursor.clone()
        };
        let outcomes = self.pipeline.commit(&ready.batch, Some(&next)).await?;
        let committed = crate::clock::now_ms();
        for ((uid, p), outcome) in ready.taken.iter().zip(&ready.batch).zip(&outcomes) {
            log_outcome(&self.mailbox.name, *uid, p, outcome);
            if let Some(arrived) = meta.get(uid).and_then(|m| m.arrived) {
                let lag = u64::try_from(committed.saturating_sub(arrived)).unwrap_or(0);
                metrics::ingest_lag(&self.mailbox.name, Duration::from_millis(lag));
            }
        }
        Ok(next)
    }

    /// Flags or moves what was committed but not yet acknowledged on the server.
    async fn repair(
        &self,
        session: &mut ImapSession,
        cursor: &Cursor,
        can_move: bool,
    ) -> Result<(), ImapError> {
        if cursor.last_uid == 0 {
            return Ok(());
        }
        let query = match self.settings.after {
            AfterIngest::Seen => format!("UNSEEN UID 1:{}", cursor.last_uid),
            AfterIngest::Move => format!("UID 1:{}", cursor.last_uid),
        };
        let pending: BTreeSet<u32> = session
            .uid_search(query)
            .await?
            .into_iter()
            .filter(|&u| u <= cursor.last_uid)
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let uids: Vec<u32> = pending.into_iter().collect();
        info!(mailbox = %self.mailbox.name, count = uids.len(), "acknowledging messages committed before a restart");
        for chunk in uids.chunks(500) {
            self.acknowledge(session, chunk, can_move).await?;
        }
        Ok(())
    }

    /// Takes one chunk of new UIDs (ascending): fetches, prepares, commits and
    /// acknowledges them.
    ///
    /// A message the daemon was holding when it last stopped (its in-flight
    /// marker is still above the cursor, from another run) may be what stopped
    /// it: such messages are taken one at a time, so that a poison message
    /// takes none of its chunk-mates down with it, and one that has stopped
    /// the daemon too often is set aside unparsed (see [`Prior::set_aside`]).
    async fn take_chunk(
        &self,
        session: &mut ImapSession,
        cursor: &mut Cursor,
        chunk: &[u32],
        can_move: bool,
    ) -> Result<(), ImapError> {
        let (Some(&first), Some(&last)) = (chunk.iter().min(), chunk.iter().max()) else {
            return Ok(());
        };
        let priors = self.priors(cursor, first, last).await?;
        let suspects = priors.values().filter(|p| p.deaths > 0).count();
        if suspects == 0 {
            return self
                .take_uids(session, cursor, chunk, can_move, &priors, false)
                .await;
        }
        warn!(mailbox = %self.mailbox.name, count = suspects,
            "messages were in hand when the daemon stopped; taking them one at a time");
        let mut plain: Vec<u32> = Vec::new();
        for &uid in chunk {
            let prior = match priors.get(&uid) {
                Some(p) if p.deaths > 0 => p,
                _ => {
                    plain.push(uid);
                    continue;
                }
            };
            if !plain.is_empty() {
                self.take_uids(session, cursor, &plain, can_move, &priors, false)
                    .await?;
                plain.clear();
            }
            if prior.set_aside() {
                self.set_aside(session, cursor, uid, prior, can_move)
                    .await?;
            } else {
                self.take_uids(session, cursor, &[uid], can_move, &priors, true)
                    .await?;
            }
        }
        if !plain.is_empty() {
            self.take_uids(session, cursor, &plain, can_move, &priors, false)
                .await?;
        }
        Ok(())
    }

    /// Fetches, marks in flight, prepares, commits and acknowledges these UIDs.
    /// `alone`: one suspect message, whose marker also records when its
    /// parsing is over.
    async fn take_uids(
        &self,
        session: &mut ImapSession,
        cursor: &mut Cursor,
        chunk: &[u32],
        can_move: bool,
        priors: &HashMap<u32, Prior>,
        alone: bool,
    ) -> Result<(), ImapError> {
        let limit = self.pipeline.config().ingest.max_message_bytes;
        let meta = metadata(session, chunk).await?;
        let fetched = fetch_bodies(session, chunk.to_vec(), &meta, limit).await?;

        // In hand from here until the commit moves the cursor past them.
        let stage = if alone { "parse" } else { "batch" };
        self.mark(cursor, chunk, priors, stage).await?;
        let ready = self.prepare(cursor, fetched).await?;
        if alone {
            self.mark(cursor, chunk, priors, "commit").await?;
        }
        *cursor = self.commit_ready(cursor, ready, &meta).await?;
        self.acknowledge(session, chunk, can_move).await
    }

    /// Commits the in-flight markers of `uids` at `stage` (one statement).
    async fn mark(
        &self,
        cursor: &Cursor,
        uids: &[u32],
        priors: &HashMap<u32, Prior>,
        stage: &str,
    ) -> Result<(), ImapError> {
        let marks: Vec<InFlight> = uids
            .iter()
            .map(|&uid| {
                let prior = priors.get(&uid).copied().unwrap_or_default();
                InFlight {
                    uid,
                    run_id: run_id().to_string(),
                    stage: stage.to_string(),
                    attempts: prior.attempts,
                    parse_deaths: prior.parse_deaths,
                }
            })
            .collect();
        self.pipeline.store().mark_in_flight(cursor, &marks).await?;
        Ok(())
    }

    /// Quarantines a message that stopped the daemon too often, from its header
    /// section alone and without parsing it, then moves the cursor past it.
    async fn set_aside(
        &self,
        session: &mut ImapSession,
        cursor: &mut Cursor,
        uid: u32,
        prior: &Prior,
        can_move: bool,
    ) -> Result<(), ImapError> {
        let mut found: Option<(Vec<u8>, u64)> = None;
        {
            let mut stream = session
                .uid_fetch(uid.to_string(), "(UID RFC822.SIZE BODY.PEEK[HEADER])")
                .await?;
            while let Some(f) = stream.try_next().await? {
                if f.uid == Some(uid) {
                    found = Some((
                        f.header().unwrap_or_default().to_vec(),
                        u64::from(f.size.unwrap_or(0)),
                    ));
                }
            }
        }
        let next = Cursor {
            last_uid: uid.max(cursor.last_uid),
            ..cursor.clone()
        };
        let Some((head, size)) = found else {
            // Expunged meanwhile: nothing to keep.
            self.pipeline.commit(&[], Some(&next)).await?;
            *cursor = next;
            return Ok(());
        };
        let origin = Origin::Imap {
            uidvalidity: cursor.uidvalidity,
            uid,
        };
        let head = crate::parse::head_of(&head).to_vec();
        let fields = crate::parse::raw_fields(&head);
        let reason = format!(
            "the daemon stopped while processing this message (attempt {}, {} of them while parsing it alone); \
             set aside unparsed so the mailbox can flow; it stays at its source ({origin})",
            prior.deaths, prior.parse_deaths
        );
        let p = Prepared {
            mailbox: self.mailbox.name.clone(),
            dedupe_key: match &fields.message_id {
                Some(id) => format!("mid:{id}"),
                None => format!("sha256:{}:{size}", crate::parse::sha256_hex(&head)),
            },
            origin,
            action: Action::Quarantine {
                reason,
                headers: head,
                message_id: fields.message_id,
                from: fields.from,
                subject: fields.subject,
                size,
            },
        };
        warn!(mailbox = %self.mailbox.name, uid, deaths = prior.deaths, parse_deaths = prior.parse_deaths,
            "setting aside a message the daemon stopped on");
        let outcomes = self
            .pipeline
            .commit(std::slice::from_ref(&p), Some(&next))
            .await?;
        *cursor = next;
        for outcome in &outcomes {
            log_outcome(&self.mailbox.name, uid, &p, outcome);
        }
        self.acknowledge(session, &[uid], can_move).await
    }

    /// Marks committed messages as done on the server.
    async fn acknowledge(
        &self,
        session: &mut ImapSession,
        uids: &[u32],
        can_move: bool,
    ) -> Result<(), ImapError> {
        let set = uid_set(uids);
        match self.settings.after {
            AfterIngest::Seen => {
                session
                    .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
                    .await?
                    .try_for_each(|_| async { Ok(()) })
                    .await?;
            }
            AfterIngest::Move if can_move => {
                session
                    .uid_mv(&set, &self.settings.processed_folder)
                    .await?;
            }
            AfterIngest::Move => {
                session
                    .uid_copy(&set, &self.settings.processed_folder)
                    .await?;
                session
                    .uid_store(&set, "+FLAGS.SILENT (\\Seen \\Deleted)")
                    .await?
                    .try_for_each(|_| async { Ok(()) })
                    .await?;
                session
                    .expunge()
                    .await?
                    .try_for_each(|_| async { Ok(()) })
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits in IDLE until the server reports something, the IDLE times out, or
    /// shutdown is asked for.
    async fn idle(&self, session: ImapSession) -> Result<ImapSession, ImapError> {
        let mut handle = session.idle();
        handle.init().await?;
        let outcome = {
            let (wait, _stop) = handle.wait_with_timeout(self.settings.idle_timeout);
            tokio::select! {
                r = wait => Some(r?),
                _ = self.shutdown.cancelled() => None,
            }
        };
        debug!(mailbox = %self.mailbox.name, ?outcome, "idle ended");
        let session = handle.done().await?;
        Ok(session)
    }
}

/// What earlier runs of the daemon did with one message, from its in-flight
/// marker, as this run sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prior {
    /// Runs that died with it in hand.
    deaths: i64,
    /// Of those, runs that died while parsing it alone.
    parse_deaths: i64,
    /// Runs that have had it in hand once this one takes it.
    attempts: i64,
}

impl Default for Prior {
    fn default() -> Self {
        Prior {
            deaths: 0,
            parse_deaths: 0,
            attempts: 1,
        }
    }
}

impl Prior {
    /// A marker written by another run is a death of that run: it never
    /// reached the commit that moves the cursor past the message.
    fn of(m: &InFlight, this_run: &str) -> Prior {
        if m.run_id == this_run {
            Prior {
                deaths: m.attempts - 1,
                parse_deaths: m.parse_deaths,
                attempts: m.attempts,
            }
        } else {
            Prior {
                deaths: m.attempts,
                parse_deaths: m.parse_deaths + i64::from(m.stage == "parse"),
                attempts: m.attempts + 1,
            }
        }
    }

    /// Whether the message is set aside instead of taken again: after two
    /// deaths while it was being parsed alone, or three in all. One death is
    /// always forgiven (the whole daemon may have been killed, with a chunk in
    /// hand), and a kill of the daemon is very unlikely to land in the short
    /// parse of the same message twice.
    fn set_aside(&self) -> bool {
        self.parse_deaths >= SET_ASIDE_AFTER_PARSE_DEATHS || self.deaths >= SET_ASIDE_AFTER_DEATHS
    }
}

/// Deaths while parsing a message alone after which it is set aside.
const SET_ASIDE_AFTER_PARSE_DEATHS: i64 = 2;
/// Deaths with a message in hand after which it is set aside.
const SET_ASIDE_AFTER_DEATHS: i64 = 3;

/// This run of the daemon, as written in in-flight markers.
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| format!("{}-{}", std::process::id(), crate::clock::now_ms()))
}

/// At most this many new UIDs are taken per round (bounds what a round holds).
const ROUND_MAX: usize = 20_000;
/// Adaptive chunks: the smallest and the largest, in messages.
const ADAPTIVE_MIN: usize = 100;
const ADAPTIVE_MAX: usize = 500;
/// A chunk holds at most this much mail (unless one message is larger).
const CHUNK_BYTES: u64 = 2 << 20;

/// One message's size and arrival (INTERNALDATE, for the ingest-lag metric).
#[derive(Debug, Clone, Copy)]
struct Meta {
    size: u32,
    arrived: Option<i64>,
}

/// A chunk in hand: its UIDs (those expunged meanwhile included), the
/// messages fetched whole, and the header sections of those over the limit
/// with their sizes.
struct Fetched {
    uids: Vec<u32>,
    raws: Vec<(u32, Vec<u8>)>,
    heads: Vec<(u32, Vec<u8>, u64)>,
}

/// A chunk prepared: its UIDs, and the UID of each prepared message.
struct Ready {
    uids: Vec<u32>,
    taken: Vec<u32>,
    batch: Vec<Prepared>,
}

/// Sizes and arrival times of `uids`, in one FETCH.
async fn metadata(
    session: &mut ImapSession,
    uids: &[u32],
) -> Result<HashMap<u32, Meta>, ImapError> {
    Ok(session
        .uid_fetch(uid_set(uids), "(UID RFC822.SIZE INTERNALDATE)")
        .await?
        .try_filter_map(|f| async move {
            let arrived = f.internal_date().map(|d| d.timestamp_millis());
            Ok(f.uid.map(|u| {
                (
                    u,
                    Meta {
                        size: f.size.unwrap_or(0),
                        arrived,
                    },
                )
            }))
        })
        .try_collect()
        .await?)
}

/// Splits `uids` (ascending) into chunks: `fixed` messages each, or when
/// unset an eighth of the backlog (between [`ADAPTIVE_MIN`] and
/// [`ADAPTIVE_MAX`]); and never more than [`CHUNK_BYTES`] of mail in one (a
/// message over `limit` counts as its header section, at most 64 KiB).
fn plan_chunks(
    uids: &[u32],
    meta: &HashMap<u32, Meta>,
    fixed: Option<usize>,
    limit: u64,
) -> Vec<Vec<u32>> {
    let count = match fixed {
        Some(n) => n.max(1),
        None => (uids.len() / 8).clamp(ADAPTIVE_MIN, ADAPTIVE_MAX),
    };
    let mut chunks = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    let mut bytes: u64 = 0;
    for &uid in uids {
        let size = meta.get(&uid).map_or(0, |m| u64::from(m.size));
        let size = if size > limit {
            size.min(64 << 10)
        } else {
            size
        };
        if !current.is_empty() && (current.len() >= count || bytes + size > CHUNK_BYTES) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(uid);
        bytes += size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Fetches a chunk: whole messages up to `limit`, the header section of
/// larger ones. UIDs missing from `meta` (expunged) are not fetched.
async fn fetch_bodies(
    session: &mut ImapSession,
    uids: Vec<u32>,
    meta: &HashMap<u32, Meta>,
    limit: u64,
) -> Result<Fetched, ImapError> {
    let (small, big): (Vec<u32>, Vec<u32>) = uids
        .iter()
        .copied()
        .filter(|u| meta.contains_key(u))
        .partition(|u| meta.get(u).is_some_and(|m| u64::from(m.size) <= limit));
    let mut raws: Vec<(u32, Vec<u8>)> = Vec::with_capacity(small.len());
    if !small.is_empty() {
        let mut stream = session
            .uid_fetch(uid_set(&small), "(UID BODY.PEEK[])")
            .await?;
        while let Some(f) = stream.try_next().await? {
            if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                raws.push((uid, body.to_vec()));
            }
        }
    }
    let mut heads: Vec<(u32, Vec<u8>, u64)> = Vec::new();
    if !big.is_empty() {
        let mut stream = session
            .uid_fetch(uid_set(&big), "(UID BODY.PEEK[HEADER])")
            .await?;
        while let Some(f) = stream.try_next().await? {
            if let Some(uid) = f.uid {
                let size = meta.get(&uid).map_or(0, |m| u64::from(m.size));
                heads.push((uid, f.header().unwrap_or_default().to_vec(), size));
            }
        }
    }
    Ok(Fetched { uids, raws, heads })
}

/// Logs one committed message and counts it in the metrics.
fn log_outcome(mailbox: &str, uid: u32, p: &Prepared, outcome: &Outcome) {
    metrics::ingested(
        mailbox,
        match outcome {
            Outcome::Created(_) => "created",
            Outcome::Reply(_) => "reply",
            Outcome::Duplicate(_) | Outcome::DuplicateQuarantined(_) => "duplicate",
            Outcome::Quarantined(_) => "quarantined",
        },
    );
    let message_id = match &p.action {
        crate::pipeline::Action::Ticket { parsed, .. } => parsed.message_id.clone(),
        crate::pipeline::Action::Quarantine { message_id, .. } => message_id.clone(),
    };
    let message_id = message_id.unwrap_or_default();
    match outcome {
        Outcome::Quarantined(id) => {
            warn!(
                mailbox,
                uid,
                message_id,
                quarantine = id,
                "message quarantined"
            )
        }
        other => info!(mailbox, uid, message_id, outcome = ?other, "message ingested"),
    }
}

/// Drops unsolicited responses we do not use, so their channel never fills.
fn drain(session: &ImapSession) {
    while session.unsolicited_responses.try_recv().is_ok() {}
}

/// A compact UID set: `1:5,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(run: &str, stage: &str, attempts: i64, parse_deaths: i64) -> InFlight {
        InFlight {
            uid: 7,
            run_id: run.to_string(),
            stage: stage.to_string(),
            attempts,
            parse_deaths,
        }
    }

    #[test]
    fn one_death_is_forgiven_two_while_parsing_alone_are_not() {
        let of = |m: InFlight| {
            let p = Prior::of(&m, "this");
            (p.deaths, p.parse_deaths, p.attempts, p.set_aside())
        };
        // Marked by this run (a session retried after an error): no death.
        assert_eq!(of(marker("this", "batch", 1, 0)), (0, 0, 1, false));
        // Another run died with it in its chunk: taken again, alone.
        assert_eq!(of(marker("a", "batch", 1, 0)), (1, 0, 2, false));
        // Then died while parsing it alone: one more try.
        assert_eq!(of(marker("b", "parse", 2, 0)), (2, 1, 3, false));
        // Twice while parsing it alone: set aside.
        assert_eq!(of(marker("c", "parse", 3, 1)), (3, 2, 4, true));
        // Killed after its parse (while committing): three deaths in all.
        assert_eq!(of(marker("b", "commit", 2, 0)), (2, 0, 3, false));
        assert_eq!(of(marker("c", "commit", 3, 0)), (3, 0, 4, true));
        // This run's own marker keeps the deaths counted before it.
        assert_eq!(of(marker("this", "parse", 3, 1)), (2, 1, 3, false));
    }

    #[test]
    fn chunks_adapt_to_the_backlog_and_are_bounded_by_bytes() {
        let meta = |uids: &[u32], size: u32| -> HashMap<u32, Meta> {
            uids.iter()
                .map(|&u| {
                    (
                        u,
                        Meta {
                            size,
                            arrived: None,
                        },
                    )
                })
                .collect()
        };
        let lens = |c: &[Vec<u32>]| c.iter().map(Vec::len).collect::<Vec<_>>();
        let uids: Vec<u32> = (1..=10_000).collect();
        let small = meta(&uids, 3_000);
        // A large backlog: the largest chunks.
        assert_eq!(
            lens(&plan_chunks(&uids, &small, None, 1 << 20)),
            vec![500; 20]
        );
        // A small one: the smallest.
        assert_eq!(
            lens(&plan_chunks(&uids[..150], &small, None, 1 << 20)),
            vec![100, 50]
        );
        // 2,000: a quarter each.
        assert_eq!(
            lens(&plan_chunks(&uids[..2_000], &small, None, 1 << 20)),
            vec![250; 8]
        );
        // Set in the configuration: fixed.
        assert_eq!(
            lens(&plan_chunks(&uids[..50], &small, Some(20), 1 << 20)),
            vec![20, 20, 10]
        );
        // Bytes: 1 MiB messages, two to a chunk; one over the limit counts
        // as its header section (64 KiB), an expunged one (no size) as nothing.
        let mut big = meta(&uids[..10], 1 << 20);
        big.insert(
            3,
            Meta {
                size: 50 << 20,
                arrived: None,
            },
        );
        big.remove(&4);
        let c = plan_chunks(&uids[..10], &big, None, 10 << 20);
        assert_eq!(
            c,
            vec![vec![1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9], vec![10]]
        );
        // Every UID once, in order.
        assert_eq!(c.concat(), uids[..10].to_vec());
    }

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[9]), "9");
        assert_eq!(uid_set(&[3, 1, 2, 2]), "1:3");
        assert_eq!(uid_set(&[]), "");
    }
}
