//! Observe: the signals a decision needs — queue depth, the app's p95 — read from the app's
//! `/metrics`, Prometheus or Redis. Failures become "unavailable" signals (the decision's
//! fallback handles them), never reconcile errors: a campaign must keep scaling when a
//! metrics endpoint blinks.

pub mod credentials;
pub mod depth;
pub mod exposition;
pub mod p95;
pub mod prometheus;
pub mod streams;
pub mod triggers;

use floodgate_crds::Dur;
use futures::future::join_all;

use self::{depth::QueueDepthSource, exposition::Sample, p95::Buckets, p95::LatencyWindow};
use crate::scaling::{Latency, Millis, Signals};

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("no app pod to scrape")]
    NoTargets,
    #[error("scraping the app failed: {0}")]
    Scrape(String),
    #[error("the app does not export {0}")]
    MissingMetric(&'static str),
    #[error("Prometheus query failed: {0}")]
    Prometheus(String),
    #[error(
        "the Prometheus query matched no series (check the Prometheus URL and its namespace/pod labels): {0}"
    )]
    NoSeries(String),
    #[error("reading queue depth from Redis failed: {0}")]
    Redis(String),
}

/// One resync's scrape of every app pod that answered.
#[derive(Clone, Debug, Default)]
pub struct AppScrape {
    pub pods: Vec<Vec<Sample>>,
    /// Families some pod declares (`# TYPE`), including ones without samples yet.
    pub declared: std::collections::BTreeSet<String>,
}

impl AppScrape {
    pub fn exports(&self, name: &str) -> bool {
        self.declared.contains(name) || self.pods.iter().flatten().any(|s| s.name == name)
    }

    /// A per-queue gauge, the maximum over pods (each reports the shared Redis count).
    pub fn queue_gauge(&self, name: &str, queue_id: &str) -> Option<f64> {
        self.pods
            .iter()
            .filter_map(|pod| exposition::gauge(pod, name, "queue", queue_id))
            .reduce(f64::max)
    }

    /// The latency histogram summed over pods.
    pub fn buckets(&self) -> Buckets {
        let mut b = Buckets::default();
        for pod in &self.pods {
            b.add_samples(pod);
        }
        b
    }
}

/// Scrapes every URL concurrently; succeeds when at least one answered.
pub async fn scrape(http: &reqwest::Client, urls: &[String]) -> Result<AppScrape, ObserveError> {
    if urls.is_empty() {
        return Err(ObserveError::NoTargets);
    }
    let results = join_all(urls.iter().map(|url| async move {
        let resp = http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{url}: {e}"))?;
        let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        let samples = exposition::parse(&text).map_err(|e| format!("{url}: {e}"))?;
        Ok::<_, String>((samples, exposition::declared_families(&text)))
    }))
    .await;
    let mut scrape = AppScrape::default();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((samples, declared)) => {
                scrape.pods.push(samples);
                scrape.declared.extend(declared);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if scrape.pods.is_empty() {
        return Err(ObserveError::Scrape(first_error.unwrap_or_default()));
    }
    Ok(scrape)
}

/// Where the signals come from: a Prometheus the Campaign names (p95 and, unless the operator
/// reads depth from Redis, queue depth; no pod is scraped), or the app pods' `/metrics`.
pub enum Source<'a> {
    Prometheus {
        url: &'a str,
        scope: prometheus::Scope<'a>,
        client: &'a prometheus::PromClient,
    },
    Pods,
}

/// What one campaign's signals are read with.
pub struct ObserveRequest<'a> {
    pub http: &'a reqwest::Client,
    /// The app pods' `/metrics` (unused with [`Source::Prometheus`]).
    pub scrape_urls: &'a [String],
    pub source: Source<'a>,
    /// The p95's window.
    pub p95_window: Dur,
    pub queue_ids: &'a [String],
    pub depth: &'a dyn QueueDepthSource,
    /// The campaign's histogram snapshots (the p95 of scraped pods is taken over them).
    pub window: &'a mut LatencyWindow,
    pub now: Millis,
}

pub struct Observed {
    pub signals: Signals,
    /// What failed, for the MetricsAvailable condition.
    pub problems: Vec<String>,
}

impl Observed {
    fn new(waiting: Option<u64>, latency: Latency, problems: Vec<String>) -> Self {
        Self {
            signals: Signals {
                waiting,
                latency,
                triggers: Default::default(),
            },
            problems,
        }
    }
}

/// Reads every signal of one campaign.
pub async fn observe(req: ObserveRequest<'_>) -> Observed {
    match &req.source {
        Source::Prometheus { url, scope, client } => {
            from_prometheus(client, url, scope, &req).await
        }
        Source::Pods => from_pods(req).await,
    }
}

/// Total queue depth from `depth`, `None` when any queue failed.
async fn total_depth(
    queue_ids: &[String],
    depth: &dyn QueueDepthSource,
    app: &AppScrape,
    problems: &mut Vec<String>,
) -> Option<u64> {
    let mut waiting = Some(0u64);
    for id in queue_ids {
        match depth.waiting(id, app).await {
            Ok(n) => waiting = waiting.map(|w| w.saturating_add(n)),
            Err(e) => {
                problems.push(format!("queue {id}: {e}"));
                waiting = None;
            }
        }
    }
    waiting
}

async fn from_prometheus(
    http: &prometheus::PromClient,
    url: &str,
    scope: &prometheus::Scope<'_>,
    req: &ObserveRequest<'_>,
) -> Observed {
    let mut problems = Vec::new();
    let latency = prometheus::p95(http, url, scope, req.p95_window)
        .await
        .unwrap_or_else(|e| {
            problems.push(e.to_string());
            Latency::Unavailable
        });
    let waiting = if req.depth.reads_app_metrics() {
        match prometheus::waiting(http, url, scope, req.queue_ids).await {
            Ok(by_queue) => Some(by_queue.values().sum()),
            Err(e) => {
                problems.push(format!("queue depth: {e}"));
                None
            }
        }
    } else {
        total_depth(
            req.queue_ids,
            req.depth,
            &AppScrape::default(),
            &mut problems,
        )
        .await
    };
    Observed::new(waiting, latency, problems)
}

async fn from_pods(req: ObserveRequest<'_>) -> Observed {
    let mut problems = Vec::new();
    let scrape = match scrape(req.http, req.scrape_urls).await {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let empty = AppScrape::default();
    let app = scrape.as_ref().unwrap_or(&empty);
    let waiting = total_depth(req.queue_ids, req.depth, app, &mut problems).await;
    let latency = match &scrape {
        // Declared but empty (no request yet) is "idle", not "missing".
        Some(s) if s.exports(p95::LATENCY_HISTOGRAM) || !s.buckets().is_empty() => req
            .window
            .observe(req.now, s.buckets(), req.p95_window.as_millis()),
        Some(_) => {
            problems.push(ObserveError::MissingMetric(p95::LATENCY_HISTOGRAM).to_string());
            Latency::Unavailable
        }
        None => Latency::Unavailable,
    };
    Observed::new(waiting, latency, problems)
}
