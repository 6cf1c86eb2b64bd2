//! Optional InfluxDB v1 output: every sample as line protocol with k6's measurement and tag
//! names (so Grafana dashboard 2587 works unchanged), buffered and POSTed in batches.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::mpsc;

use crate::client::HttpClient;
use crate::metrics::ReqKey;
use crate::recorder::CheckKey;

const BATCH_LINES: usize = 5000;

/// The recording side: cheap to call from VUs; drops (and counts) lines if the writer lags
/// rather than slow the test down.
pub struct InfluxSink {
    tx: mpsc::Sender<String>,
    pub lost_lines: AtomicU64,
}

/// Where to write: `http://host:8086/k6` means database `k6` (k6's `--out influxdb=` form).
pub fn write_url(url: &str) -> anyhow::Result<http::Uri> {
    let uri: http::Uri = url.parse()?;
    let db = uri.path().trim_matches('/');
    let db = if db.is_empty() { "k6" } else { db };
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("influxdb url needs a host"))?;
    Ok(format!("http://{authority}/write?db={db}&precision=ns").parse()?)
}

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        if matches!(c, ',' | ' ' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl InfluxSink {
    /// Starts the batching writer on the current runtime and returns the sink feeding it.
    pub fn start(client: HttpClient, url: http::Uri) -> (InfluxSink, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(200_000);
        let handle = tokio::spawn(writer(client, url, rx));
        (
            InfluxSink {
                tx,
                lost_lines: AtomicU64::new(0),
            },
            handle,
        )
    }

    fn send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.lost_lines.fetch_add(1, Relaxed);
        }
    }

    fn point(&self, measurement: &str, tags: &[(&str, &str)], value: f64) {
        let mut line = String::with_capacity(160);
        line.push_str(measurement);
        for (k, v) in tags {
            line.push(',');
            line.push_str(k);
            line.push('=');
            escape(if v.is_empty() { "-" } else { v }, &mut line);
        }
        let _ = write!(line, " value={value} {}", now_ns());
        self.send(line);
    }

    pub fn request(&self, key: &ReqKey, duration_us: u64, failed: bool) {
        let status = key.status.to_string();
        let expected = if key.expected { "true" } else { "false" };
        let tags = [
            ("scenario", &*key.scenario),
            ("group", &*key.group),
            ("name", &*key.name),
            ("method", key.method),
            ("status", status.as_str()),
            ("expected_response", expected),
        ];
        self.point("http_reqs", &tags, 1.0);
        self.point("http_req_duration", &tags, duration_us as f64 / 1000.0);
        self.point("http_req_failed", &tags, if failed { 1.0 } else { 0.0 });
    }

    pub fn check(&self, key: &CheckKey, ok: bool) {
        let tags = [
            ("scenario", &*key.scenario),
            ("group", &*key.group),
            ("check", &*key.name),
        ];
        self.point("checks", &tags, if ok { 1.0 } else { 0.0 });
    }

    pub fn iteration(&self, duration_us: u64) {
        self.point("iterations", &[], 1.0);
        self.point("iteration_duration", &[], duration_us as f64 / 1000.0);
    }

    pub fn vus(&self, vus: u64, max: u64) {
        self.point("vus", &[], vus as f64);
        self.point("vus_max", &[], max as f64);
    }
}

async fn writer(client: HttpClient, url: http::Uri, mut rx: mpsc::Receiver<String>) {
    let mut batch = String::new();
    let mut lines = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(l) => {
                    batch.push_str(&l);
                    batch.push('\n');
                    lines += 1;
                    if lines >= BATCH_LINES {
                        flush(&client, &url, &mut batch, &mut lines).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&client, &url, &mut batch, &mut lines).await,
        }
    }
    flush(&client, &url, &mut batch, &mut lines).await;
}

async fn flush(client: &HttpClient, url: &http::Uri, batch: &mut String, lines: &mut usize) {
    if *lines == 0 {
        return;
    }
    let body = Bytes::from(std::mem::take(batch));
    *lines = 0;
    let req = http::Request::post(url.clone()).body(Full::new(body));
    match req {
        Ok(req) => match client.request(req).await {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => tracing::warn!(status = %resp.status(), "influxdb rejected a batch"),
            Err(e) => tracing::warn!(error = %e, "influxdb write failed"),
        },
        Err(e) => tracing::warn!(error = %e, "bad influxdb request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_comes_from_the_path() {
        assert_eq!(
            write_url("http://localhost:8086/loadtests")
                .expect("url")
                .to_string(),
            "http://localhost:8086/write?db=loadtests&precision=ns"
        );
        assert_eq!(
            write_url("http://127.0.0.1:8086").expect("url").to_string(),
            "http://127.0.0.1:8086/write?db=k6&precision=ns"
        );
    }

    #[test]
    fn tag_values_are_escaped() {
        let mut s = String::new();
        escape("a b,c=d", &mut s);
        assert_eq!(s, r"a\ b\,c\=d");
    }
}
