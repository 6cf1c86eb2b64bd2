//! The HTTP server loop: `axum::serve`'s job, with the per-connection bounds it does not
//! expose. Measured without them (docs/security.md, "Memory stays bounded under overload"):
//! 2,000 clients that each sent 60 KB of an unfinished header held the process at 263 MiB,
//! 1,000 with 300 KB at 533 MiB — hyper's read buffer grows to ~400 KB per connection and,
//! with no timer, a connection may take forever to finish its head.
//!
//! - At most `max_connections` open at once: past it the loop stops accepting (clients wait
//!   in the kernel's backlog) until one closes.
//! - Each connection's read buffer is at most `max_buf_size` bytes, which also caps a
//!   request's head (hyper answers 431 past it).
//! - A request head must arrive within `header_read_timeout`, else the connection is closed.
//!
//! Shutdown as with `axum::serve`: stop accepting, let in-flight requests finish, close idle
//! keep-alive connections — after accepting what is already in the listen backlog (closing
//! the listener would reset those connections, requests and all), and after a short settle
//! so the last connections accepted read their request before idle ones are closed. Before
//! that, while `draining()` is true (the drain delay after
//! SIGTERM), every HTTP/1 response carries `Connection: close`: a proxy's keep-alive connection
//! is closed by this side right after a complete response, never while idle, so the proxy
//! cannot send a request down a connection the replica is about to close (docs/deploy.md,
//! "Several replicas behind nginx").

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Version, header},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tower::ServiceExt;

/// The per-connection bounds (`FLOODGATE_MAX_CONNECTIONS`, `FLOODGATE_CONN_BUFFER_BYTES`,
/// `FLOODGATE_HEADER_READ_TIMEOUT_MS`).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_buf_size: usize,
    pub header_read_timeout: Duration,
}

/// How long, after the listener closed, connections accepted in the last moments get to read
/// their request before idle ones are closed (each closes after its response anyway).
const SETTLE: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` until `shutdown` resolves, then drains. While `draining()`
/// is true, responses close their connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    draining: impl Fn() -> bool + Clone + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let conns = Conns::new(router, limits, draining);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut full_since: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if full_since.is_none() {
                    full_since = Some(Instant::now());
                    tracing::warn!(
                        max,
                        "connection limit reached; not accepting until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        if let Some(since) = full_since.take() {
            tracing::info!(
                waited_ms = since.elapsed().as_millis() as u64,
                "accepting again"
            );
        }
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: back off as axum::serve does
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        conns.spawn(stream, addr, Some(slot));
    }
    // Connections the kernel completed but nobody accepted yet are reset when the listener
    // closes, after a proxy may have sent its request down them: take them first.
    conns.accept_backlog(listener, &slots);
    // The graceful shutdown closes a connection whose request hyper has not read yet as if it
    // were idle: give the last ones accepted a moment to read theirs.
    let _ = tokio::time::timeout(SETTLE, slots.acquire_many(max as u32)).await;
    conns.graceful.shutdown().await;
    Ok(())
}

/// Serving one accepted connection: hyper's builder with the bounds, the router, the drain.
struct Conns<D> {
    builder: Builder<TokioExecutor>,
    graceful: GracefulShutdown,
    router: Router,
    draining: D,
}

impl<D: Fn() -> bool + Clone + Send + Sync + 'static> Conns<D> {
    fn new(router: Router, limits: ConnLimits, draining: D) -> Self {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper refuses less than 8 KiB
            .max_buf_size(limits.max_buf_size.max(8 * 1024));
        Self {
            builder,
            graceful: GracefulShutdown::new(),
            router,
            draining,
        }
    }

    /// Serves every connection waiting in `listener`'s backlog, then closes it.
    fn accept_backlog(&self, listener: TcpListener, slots: &Arc<Semaphore>) {
        let listener = match listener.into_std() {
            Ok(l) => l,
            Err(e) => return tracing::debug!(error = %e, "could not take the listen backlog"),
        };
        loop {
            let accepted = listener.accept().and_then(|(stream, addr)| {
                stream.set_nonblocking(true)?;
                Ok((TcpStream::from_std(stream)?, addr))
            });
            match accepted {
                Ok((stream, addr)) => {
                    self.spawn(stream, addr, slots.clone().try_acquire_owned().ok())
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // out of file descriptors and the like: what is left is reset
                    tracing::debug!(error = %e, "accept failed while closing");
                    break;
                }
            }
        }
    }

    fn spawn(&self, stream: TcpStream, addr: SocketAddr, slot: Option<OwnedSemaphorePermit>) {
        let (router, draining) = (self.router.clone(), self.draining.clone());
        let service = tower::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            // HTTP/2 has no Connection header (it drains with GOAWAY)
            let http1 = req.version() <= Version::HTTP_11;
            let (router, draining) = (router.clone(), draining.clone());
            async move {
                let mut res = router.oneshot(req).await?;
                if http1 && draining() {
                    res.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = self.graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
}
