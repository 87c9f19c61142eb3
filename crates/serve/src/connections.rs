//! Accepting connections: HTTP/1.1 through hyper, with the limits that keep idle and slow
//! clients from holding the server: at most `max_connections` at once (more wait in the
//! listen backlog until one closes), and a connection whose request head has not arrived
//! within `read_timeout` is closed (hyper's header-read timeout, which also ends connections
//! that send nothing at all). On SIGTERM or Ctrl-C the listener closes, each connection
//! finishes the request it is serving, and the function returns.

use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};

/// Serves `app` on `listener` until `shutdown` completes, then lets the connections finish.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            // Out of file descriptors or a connection reset before it was accepted: the
            // listener itself is fine; a short pause keeps an exhausted process from spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // An error here is the client's (a reset, a malformed head, the timeout): the
            // connection ends, the server goes on.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
