//! The SMTP client under the sender: one kept connection per lane, built on
//! lettre's `AsyncSmtpConnection` over our own `TcpStream`.
//!
//! Why not lettre's `AsyncSmtpTransport`: it sets no TCP_NODELAY (each
//! command then waits on Nagle's algorithm and the server's delayed ACK, about
//! 40 ms a transaction) and offers no way to set it. Here every socket has
//! TCP_NODELAY, and TLS is still lettre's own (`Tls::Wrapper`: the handshake
//! on our socket before the greeting; STARTTLS: `AsyncSmtpConnection::starttls`).
//!
//! Nothing may hold a lane for long:
//! - Connection set-up (TCP, greeting, EHLO, STARTTLS, AUTH) is bounded, first
//!   by [`SETUP_FIRST_TRY`], then once more by what is left of the attempt's
//!   budget. A greeting that never comes is what stalled lanes before: OpenSMTPD
//!   listens with a backlog of 5, and a burst of 16 connects overflows it; the
//!   kernel drops some handshakes' last ACK and such a client waits for a
//!   greeting that never comes (measured: 40 s and more). So at most
//!   [`CONNECTING`] connections are set up at once per sender, and a silent
//!   server is left for a new connection well before the mail's budget is spent.
//! - A transaction on a connection is bounded by what is left of the budget;
//!   on timeout the connection is dropped (never sent QUIT and waited on).
//! - A kept connection is used for at most [`MAX_MAILS`] mails (OpenSMTPD's
//!   default per-session limit), not after [`MAX_IDLE`], and after
//!   [`CHECK_IDLE`] of quiet only once a NOOP got its answer. A connection the
//!   server closed fails at once (end of stream or reset), never by timeout;
//!   any failed transaction drops its connection, so the sender's next attempt
//!   is on a fresh one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use tokio::sync::{Mutex, Semaphore};

use crate::config::{Security, SmtpConfig};

/// Mails sent over one connection before it is replaced.
pub const MAX_MAILS: usize = 100;
/// A connection unused this long is checked with NOOP before use.
pub const CHECK_IDLE: Duration = Duration::from_secs(2);
/// A connection unused this long is replaced without asking.
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// The first try at setting up a connection (greeting, EHLO, TLS, AUTH).
pub const SETUP_FIRST_TRY: Duration = Duration::from_secs(6);
/// Connections set up at once by one sender.
pub const CONNECTING: usize = 4;

/// How one try went.
#[derive(Debug)]
pub enum SendError {
    /// A 5xx, or a mail the server can never take (non-ASCII without SMTPUTF8).
    Permanent(String),
    /// Anything else: worth another try.
    Temporary(String),
}

/// Where and how to connect; shared by the lanes of one sender.
struct Server {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    connecting: Semaphore,
}

/// One lane: sends one mail at a time over its kept connection.
pub struct Lane {
    server: Arc<Server>,
    kept: Mutex<Option<Kept>>,
}

struct Kept {
    conn: AsyncSmtpConnection,
    mails: usize,
    last: Instant,
}

/// `n` lanes to the configured server.
pub fn lanes(c: &SmtpConfig, n: usize) -> Result<Vec<Lane>, String> {
    let tls = match c.security {
        Security::Plain => None,
        Security::Tls | Security::Starttls => Some(tls_parameters(c)?),
    };
    let credentials = match (&c.username, c.password()?) {
        (Some(user), Some(pw)) => Some(Credentials::new(user.clone(), pw.expose().to_string())),
        _ => None,
    };
    let server = Arc::new(Server {
        host: c.host.clone(),
        port: c.port(),
        security: c.security,
        tls,
        credentials,
        hello: ClientId::default(),
        timeout: Duration::from_secs(c.timeout_secs.max(1)),
        connecting: Semaphore::new(CONNECTING),
    });
    Ok((0..n.max(1))
        .map(|_| Lane {
            server: server.clone(),
            kept: Mutex::new(None),
        })
        .collect())
}

/// lettre's TLS parameters: the system's roots plus `ca_file`.
pub fn tls_parameters(c: &SmtpConfig) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(c.host.clone());
    if let Some(file) = &c.ca_file {
        let pem = std::fs::read(file).map_err(|e| format!("ca_file {}: {e}", file.display()))?;
        let cert = lettre::transport::smtp::client::Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {}: {e}", file.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| format!("TLS: {e}"))
}

impl Lane {
    /// One try at sending `raw`, within the configured timeout in all.
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Response, SendError> {
        let deadline = Instant::now() + self.server.timeout;
        let mut kept = self.kept.lock().await;
        let mut conn = match kept.take() {
            Some(k) => match self.reuse(k, deadline).await {
                Some(k) => k,
                None => self.server.connect(deadline).await?,
            },
            None => self.server.connect(deadline).await?,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.conn.send(envelope, raw)).await {
            Ok(Ok(response)) => {
                conn.mails += 1;
                conn.last = Instant::now();
                if conn.mails < MAX_MAILS && !conn.conn.has_broken() {
                    *kept = Some(conn);
                } else {
                    quit_later(conn.conn);
                }
                Ok(response)
            }
            // lettre has sent QUIT and closed the connection on a refusal.
            Ok(Err(e)) => Err(from_lettre(e)),
            Err(_) => Err(SendError::Temporary(format!(
                "no answer from the SMTP server within {:?}",
                self.server.timeout
            ))),
        }
    }

    /// The kept connection if it is fit for another mail; else it is let go.
    async fn reuse(&self, mut k: Kept, deadline: Instant) -> Option<Kept> {
        let idle = k.last.elapsed();
        if k.conn.has_broken() || idle > MAX_IDLE {
            return None;
        }
        if idle > CHECK_IDLE {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(SETUP_FIRST_TRY);
            match tokio::time::timeout(left, k.conn.test_connected()).await {
                Ok(true) => {}
                _ => return None,
            }
        }
        Some(k)
    }
}

impl Server {
    /// A new connection, greeted, encrypted and logged in as configured: a
    /// first short try, then one more with what is left until `deadline`.
    async fn connect(&self, deadline: Instant) -> Result<Kept, SendError> {
        let mut last = String::new();
        for first in [true, false] {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let limit = if first {
                left.min(SETUP_FIRST_TRY)
            } else {
                left
            };
            let Ok(_permit) = tokio::time::timeout(limit, self.connecting.acquire()).await else {
                last = "no connection slot free".to_string();
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = if first {
                left.min(SETUP_FIRST_TRY)
            } else {
                left
            };
            match tokio::time::timeout(limit, self.setup()).await {
                Ok(Ok(conn)) => {
                    return Ok(Kept {
                        conn,
                        mails: 0,
                        last: Instant::now(),
                    });
                }
                Ok(Err(SendError::Permanent(e))) => return Err(SendError::Permanent(e)),
                Ok(Err(SendError::Temporary(e))) => last = e,
                Err(_) => {
                    last = format!(
                        "connection to {}:{} not ready (greeting, EHLO, TLS, AUTH) within {limit:?}",
                        self.host, self.port
                    )
                }
            }
        }
        Err(SendError::Temporary(last))
    }

    async fn setup(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                SendError::Temporary(format!("connect to {}:{}: {e}", self.host, self.port))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Temporary(format!("TCP_NODELAY: {e}")))?;
        let stream: Box<dyn AsyncTokioStream> = match (&self.security, &self.tls) {
            (Security::Tls, Some(tls)) => Box::new(wrapper::handshake(tcp, tls.clone()).await?),
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(from_lettre)?;
        if let (Security::Starttls, Some(tls)) = (&self.security, &self.tls) {
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(from_lettre)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(from_lettre)?;
        }
        Ok(conn)
    }
}

/// A connection let go after its last mail: QUIT, answered or not within a
/// few seconds, off the lane's path.
fn quit_later(mut conn: AsyncSmtpConnection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
    });
}

fn from_lettre(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Temporary(e.to_string())
    }
}

/// Implicit TLS (`Tls::Wrapper`) on our own socket, with lettre's own TLS
/// code: lettre's (deprecated but public) `AsyncNetworkStream` upgrades the
/// socket, and a tokio adapter hands it back to `connect_with_transport`.
#[allow(deprecated)]
mod wrapper {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use lettre::transport::smtp::client::{AsyncNetworkStream, AsyncTokioStream, TlsParameters};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

    #[derive(Debug)]
    pub struct Tls {
        inner: Compat<AsyncNetworkStream>,
        peer: std::net::SocketAddr,
    }

    pub async fn handshake(
        tcp: tokio::net::TcpStream,
        tls: TlsParameters,
    ) -> Result<Tls, super::SendError> {
        let peer = tcp
            .peer_addr()
            .map_err(|e| super::SendError::Temporary(format!("TLS: {e}")))?;
        let mut stream = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
        stream.upgrade_tls(tls).await.map_err(super::from_lettre)?;
        Ok(Tls {
            inner: stream.compat(),
            peer,
        })
    }

    impl AsyncRead for Tls {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Tls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    impl AsyncTokioStream for Tls {
        fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            Ok(self.peer)
        }
    }
}
