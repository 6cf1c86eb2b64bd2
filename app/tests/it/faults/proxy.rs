//! A TCP proxy on loopback that injects faults between the app and a dependency: added
//! latency on every response chunk, a stall (bytes held in both directions, like a server
//! under SIGSTOP: connections stay open and nothing answers) and cutting every connection.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Proxy {
    pub addr: SocketAddr,
    latency_ms: Arc<AtomicU64>,
    stalled: watch::Sender<bool>,
    cuts: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (stalled, stall_rx) = watch::channel(false);
        let (cuts, cut_rx) = watch::channel(0u64);
        let lat = latency_ms.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (lat, stall_rx, cut_rx) = (lat.clone(), stall_rx.clone(), cut_rx.clone());
                tokio::spawn(async move {
                    // a stalled server accepts (the kernel does) but does not answer
                    wait_unstalled(&mut stall_rx.clone()).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let no_latency = Arc::new(AtomicU64::new(0));
                    let up = pump(cr, sw, no_latency, stall_rx.clone());
                    let down = pump(sr, cw, lat, stall_rx);
                    let mut cut_rx = cut_rx;
                    cut_rx.borrow_and_update();
                    tokio::select! {
                        _ = async { tokio::join!(up, down) } => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            latency_ms,
            stalled,
            cuts,
            accept,
        }
    }

    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Closes every open connection (new ones are still accepted).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn wait_unstalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stalled| !*stalled).await;
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<AtomicU64>,
    mut stall_rx: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_unstalled(&mut stall_rx).await;
        let ms = latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        wait_unstalled(&mut stall_rx).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
