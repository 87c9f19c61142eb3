//! `catdog serve`: a trained model behind HTTP, on loopback by default.
//!
//! - `POST /predictions` (and TorchServe's `/predictions/{model}`): one image as the raw body,
//!   or several as `multipart/form-data`; flip test-time augmentation
//!   as `catdog predict` does, `?tta=0` for one forward pass. Each image
//!   gets its class, probabilities and logits per class and the temperature.
//! - `GET /ping`, `GET /model` (the model card), `GET /metrics` (Prometheus text), `GET /` (a
//!   drag-and-drop page, self-contained).
//!
//! Concurrent requests are micro-batched ([`batcher`]): a bounded queue (full: 503 with
//! `Retry-After`), batches of at most `max_batch` images, gathered for at most `max_wait`.

mod batcher;
mod card;
mod connections;
mod metrics;
mod routes;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use catdog_infer::{Classifier, Tta};

pub use batcher::BatchLimits;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model: PathBuf,
    pub addr: SocketAddr,
    pub limits: BatchLimits,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// A request whose body has not arrived within this time gets 408.
    pub read_timeout: Duration,
    /// Request bodies held in memory at once, all requests together; beyond it, 503.
    pub max_inflight_bytes: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How a request without `?tta=` is classified (`catdog predict`'s default: flip TTA).
    pub tta: Tta,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server stopped")]
    Io(#[from] std::io::Error),
}

/// Serves `classifier` until SIGTERM or Ctrl-C, then finishes the requests in flight. `ready`
/// is called with the bound address (the port when 0 was asked for) before the first request.
pub fn serve(
    classifier: Classifier,
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr()?;
        let classifier = Arc::new(classifier);
        let metrics = Arc::new(metrics::Metrics::default());
        let batcher = batcher::Batcher::start(classifier.clone(), config.limits, metrics.clone());
        let card = card::ModelCard::read(&config.model, &classifier);
        let state = routes::State {
            batcher,
            metrics,
            card: Arc::new(card),
            max_body_bytes: config.max_body_bytes,
            read_timeout: config.read_timeout,
            tta: config.tta,
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                (config.max_inflight_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
        };
        let app = routes::router(state);
        ready(addr);
        connections::serve_connections(
            listener,
            app,
            config.max_connections,
            config.read_timeout,
            shutdown_signal(),
        )
        .await;
        Ok(())
    })
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
