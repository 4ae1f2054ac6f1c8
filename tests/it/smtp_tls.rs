//! The outbox's SMTP lanes over TLS: STARTTLS and implicit TLS (SMTPS), the
//! server's certificate checked against `[smtp] ca_file`.
//!
//! The server is a small SMTP server in the test, with TLS from tokio-rustls
//! and a certificate made by `devstack::make_certificates` (openssl). Not the
//! devstack's OpenSMTPD: Debian 12's OpenSMTPD 6.8.0p2 cannot do TLS with
//! OpenSSL 3 (every handshake ends in "rsa routines::missing private key" /
//! "SSL routines::EVP lib" on its side, upstream issues #1171 and #1239).
//!
//! The STARTTLS server also takes mail in clear from a client that does not
//! ask for TLS, and notes how each mail came: a lane that fell back to clear
//! text after a refused certificate would be seen.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use triaged::dev::devstack::make_certificates;
use triaged::store::OutboxSummary;

use crate::harness::{start_sender, store_with_queued_mail};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Greeting in clear, STARTTLS offered (and mail taken in clear too).
    Starttls,
    /// The TLS handshake before the greeting.
    Implicit,
}

/// One mail as the server received it.
#[derive(Debug, Clone)]
struct Mail {
    tls: bool,
    subject: String,
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// TLS handshakes that completed.
    handshakes: AtomicUsize,
    /// Why the others did not.
    failed_handshakes: Mutex<Vec<String>>,
    mails: Mutex<Vec<Mail>>,
}

impl Seen {
    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }
}

/// Server certificates: (ca.pem, cert.pem, key.pem) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("mkdir");
    make_certificates(dir).expect("openssl certificates")
}

fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

async fn tls_smtp(mode: Mode, cert: &Path, key: &Path) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Seen::default());
    let acceptor = acceptor(cert, key);
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            s.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(session(mode, sock, acceptor.clone(), s.clone()));
        }
    });
    (port, seen)
}

async fn session(mode: Mode, sock: TcpStream, acceptor: TlsAcceptor, seen: Arc<Seen>) {
    let sock = match mode {
        Mode::Starttls => {
            let mut plain = BufReader::new(sock);
            if plain.write_all(b"220 fake ESMTP\r\n").await.is_err() {
                return;
            }
            if !dialogue(&mut plain, false, true, &seen).await {
                return;
            }
            // The client waits for "220 go ahead" before its ClientHello.
            if !plain.buffer().is_empty() {
                return;
            }
            plain.into_inner()
        }
        Mode::Implicit => sock,
    };
    let mut tls = match acceptor.accept(sock).await {
        Ok(tls) => {
            seen.handshakes.fetch_add(1, Ordering::SeqCst);
            BufReader::new(tls)
        }
        Err(e) => {
            seen.failed_handshakes
                .lock()
                .expect("lock")
                .push(e.to_string());
            return;
        }
    };
    if mode == Mode::Implicit && tls.write_all(b"220 fake ESMTP\r\n").await.is_err() {
        return;
    }
    dialogue(&mut tls, true, false, &seen).await;
}

/// The SMTP dialogue until the client leaves (false) or asks for STARTTLS
/// and got its go-ahead (true).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    tls: bool,
    offer_starttls: bool,
    seen: &Seen,
) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if offer_starttls => b"250-fake\r\n250-8BITMIME\r\n250 STARTTLS\r\n",
            "EHLO" => b"250-fake\r\n250 8BITMIME\r\n",
            "STARTTLS" if offer_starttls => {
                return s.write_all(b"220 2.0.0 go ahead\r\n").await.is_ok();
            }
            "STARTTLS" => b"503 5.5.1 TLS already active\r\n",
            "DATA" => {
                if s.write_all(b"354 go on\r\n").await.is_err() {
                    return false;
                }
                let mut subject = String::new();
                loop {
                    line.clear();
                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return false;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Subject: ") {
                        subject = v.trim().to_string();
                    }
                }
                seen.mails.lock().expect("lock").push(Mail { tls, subject });
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                let _ = s.write_all(b"221 bye\r\n").await;
                return false;
            }
            _ => b"250 ok\r\n",
        };
        if s.write_all(reply).await.is_err() {
            return false;
        }
    }
}

/// Queues one mail in a fresh SQLite store and runs the sender, one lane,
/// against 127.0.0.1:`port` with `security` and `ca_file`, until `done`
/// holds for the outbox or `limit` passes. Returns the outbox then.
async fn send_one(
    security: &str,
    port: u16,
    ca: &Path,
    limit: Duration,
    done: impl Fn(&[OutboxSummary]) -> bool,
) -> Vec<OutboxSummary> {
    let (_dir, store) = store_with_queued_mail(&[(
        "over TLS".to_string(),
        "tls-1@example.edu".to_string(),
        "Sent over TLS.".to_string(),
    )])
    .await;
    let (shutdown, task) = start_sender(
        &store,
        &format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\nca_file = \"{}\"\n\
             concurrency = 1\ntimeout_secs = 10\nretry_initial_secs = 1\nretry_max_secs = 1\n",
            ca.display()
        ),
    );
    let deadline = Instant::now() + limit;
    let mut outbox;
    loop {
        outbox = store.list_outbox(None, i64::MAX).await.expect("outbox");
        if done(&outbox) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("sender");
    store.close().await;
    outbox
}

fn all_sent(outbox: &[OutboxSummary]) -> bool {
    !outbox.is_empty() && outbox.iter().all(|m| m.status == "sent")
}

/// The one mail was tried at least three times (or, wrongly, sent).
fn tried_thrice(outbox: &[OutboxSummary]) -> bool {
    outbox.iter().any(|m| m.attempts >= 3 || m.status == "sent")
}

async fn delivers_over_tls(mode: Mode, security: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(&dir.path().join("server"));
    let (port, seen) = tls_smtp(mode, &cert, &key).await;
    let outbox = send_one(security, port, &ca, Duration::from_secs(30), all_sent).await;
    assert!(
        all_sent(&outbox),
        "not sent: {outbox:#?}; handshakes failed: {:?}",
        seen.failed_handshakes.lock().expect("lock")
    );
    let mails = seen.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].tls, "the mail came in clear: {mails:?}");
    assert_eq!(mails[0].subject, "over TLS");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one connection");
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1, "one TLS session");
}

/// The server's certificate is signed by a CA other than `ca_file`: every
/// try fails on the certificate and the mail stays in the outbox; nothing
/// reaches the server, in clear or otherwise.
async fn refuses_an_unknown_certificate(mode: Mode, security: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = certificates(&dir.path().join("server"));
    let (other_ca, _, _) = certificates(&dir.path().join("other"));
    let (port, seen) = tls_smtp(mode, &cert, &key).await;
    let outbox = send_one(
        security,
        port,
        &other_ca,
        Duration::from_secs(30),
        tried_thrice,
    )
    .await;
    assert!(
        seen.mails().is_empty(),
        "the server got mail: {:?}",
        seen.mails()
    );
    assert_eq!(outbox.len(), 1, "{outbox:#?}");
    let m = &outbox[0];
    assert_eq!(m.status, "pending", "{m:#?}");
    assert!(m.attempts >= 3, "not retried: {m:#?}");
    let error = m.last_error.as_deref().unwrap_or("").to_ascii_lowercase();
    assert!(
        // rustls: "invalid peer certificate: BadSignature" (the other CA
        // has the same name as the right one), or UnknownIssuer.
        error.contains("invalid peer certificate"),
        "no clear certificate error: {m:#?}"
    );
    assert_eq!(
        seen.handshakes.load(Ordering::SeqCst),
        0,
        "a TLS session was set up"
    );
    let failed = seen.failed_handshakes.lock().expect("lock").clone();
    assert!(
        failed.len() >= 3,
        "handshakes the client broke off: {failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_lane_delivers_over_tls_with_ca_file() {
    delivers_over_tls(Mode::Starttls, "starttls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_lane_delivers_over_tls_with_ca_file() {
    delivers_over_tls(Mode::Implicit, "tls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_lane_refuses_a_certificate_not_from_ca_file() {
    refuses_an_unknown_certificate(Mode::Starttls, "starttls").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_lane_refuses_a_certificate_not_from_ca_file() {
    refuses_an_unknown_certificate(Mode::Implicit, "tls").await;
}
