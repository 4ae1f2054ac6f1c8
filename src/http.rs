//! The HTTP listener (`[http] listen`, axum), started by the daemon:
//!
//! - `/metrics`: the Prometheus exposition of [`crate::metrics`], with the
//!   gauges read from the store (outbox depth, open tickets, tickets past
//!   due) at scrape time, at most once per [`STORE_CACHE`] however many
//!   scrapes come;
//! - `/healthz`: 200 while the process serves;
//! - `/readyz`: 200 when the store answers and every mailbox this daemon
//!   watches is up or retrying within its budget
//!   (`[http] retry_budget_secs`); 503 with the reasons otherwise (a refused
//!   login at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::HttpConfig;
use crate::metrics::{self, StoreReading};
use crate::store::Store;

/// How long a reading of the store serves scrapes.
pub const STORE_CACHE: Duration = Duration::from_secs(5);
/// How long `/readyz` waits for the store.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Shared {
    store: Store,
    budget: Duration,
    /// When the store was last read; held across reading, setting and
    /// encoding, so concurrent scrapes never see half a refresh.
    last_read: tokio::sync::Mutex<Option<Instant>>,
}

/// Binds `config.listen` and serves until `shutdown`. The bind happens
/// before this returns, so a taken port stops the daemon's start.
pub async fn start(
    config: &HttpConfig,
    store: Store,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        store,
        budget: Duration::from_secs(config.retry_budget_secs),
        last_read: tokio::sync::Mutex::new(None),
    });
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared);
    info!(listen = %addr, "HTTP listener started (/metrics, /healthz, /readyz)");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP listener stopped");
        }
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics_page(State(shared): State<Arc<Shared>>) -> Response {
    let mut last = shared.last_read.lock().await;
    if last.is_none_or(|t| t.elapsed() >= STORE_CACHE) {
        match read_store(&shared.store).await {
            Ok(reading) => metrics::set_store(&reading),
            // The last reading stays; /readyz says the store is down.
            Err(e) => warn!(error = %e, "metrics: the store could not be read"),
        }
        *last = Some(Instant::now());
    }
    match metrics::encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

async fn read_store(store: &Store) -> Result<StoreReading, crate::store::StoreError> {
    let gauges = store.gauges(crate::clock::now_ms()).await?;
    let counts = crate::store::metrics();
    Ok(StoreReading {
        outbox: gauges.outbox,
        open: gauges.open,
        past_due: gauges.past_due,
        failed_commits: counts.failed_commits,
        resource_errors: counts.resource_errors,
        discarded_connections: counts.discarded_connections,
    })
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let mut reasons = Vec::new();
    match tokio::time::timeout(STORE_PING_TIMEOUT, shared.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("store: {e}")),
        Err(_) => reasons.push(format!(
            "store: no answer within {} s",
            STORE_PING_TIMEOUT.as_secs()
        )),
    }
    reasons.extend(metrics::unready_mailboxes(shared.budget));
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = reasons.join("\n") + "\n";
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}
