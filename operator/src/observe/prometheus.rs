//! p95 from the Prometheus HTTP API, when the Campaign names a Prometheus: it already keeps
//! every pod's history, so the operator's own window is not needed.
//!
//! The query is scoped to the Campaign's app: its namespace and the pods of its target
//! Deployment (`<deployment>-<replicaset hash>-<pod suffix>`), through the labels Prometheus
//! attaches (kubernetes_sd relabelling usually yields `namespace` and `pod`; both names are
//! flags). One Prometheus commonly scrapes several namespaces and releases: an unscoped sum
//! would scale one app on another's latency.
//!
//! Answers: a finite value is the p95; `NaN` means the series exist but no request finished
//! in the window (0/0 in `histogram_quantile`): the app is idle, `Latency::Idle`; an empty
//! result means the selector matched no series at all (wrong labels, wrong Prometheus, app not
//! scraped): the signal is unavailable, so the decision's fallback rules apply and
//! MetricsAvailable=False says why.

use floodgate_crds::Dur;
use serde::Deserialize;

use super::{ObserveError, p95::LATENCY_HISTOGRAM};
use crate::scaling::Latency;

/// The Prometheus label names that carry a series' namespace and pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromLabels {
    pub namespace: String,
    pub pod: String,
}

impl Default for PromLabels {
    fn default() -> Self {
        Self {
            namespace: "namespace".into(),
            pod: "pod".into(),
        }
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*` (for the flags).
pub fn label_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a Prometheus label name"))
    }
}

/// Whose latency: the Campaign's namespace and target Deployment.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub labels: &'a PromLabels,
}

/// A PromQL double-quoted string literal.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` matched literally inside a RE2 regular expression.
fn regex_literal(value: &str) -> String {
    value.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// The series selector of the Campaign's app pods.
pub fn selector(scope: &Scope<'_>) -> String {
    let pods = format!("{}-[a-z0-9]+-[a-z0-9]+", regex_literal(scope.deployment));
    format!(
        "{}={},{}=~{}",
        scope.labels.namespace,
        quoted(scope.namespace),
        scope.labels.pod,
        quoted(&pods)
    )
}

pub fn p95_query(scope: &Scope<'_>, window: Dur) -> String {
    format!(
        "histogram_quantile(0.95, sum by (le) (rate({LATENCY_HISTOGRAM}_bucket{{{}}}[{window}])))",
        selector(scope)
    )
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    /// `[unix time, "value"]`
    value: (f64, String),
}

/// The instant query's URL on a Prometheus base URL (with or without a path prefix).
fn query_url(base_url: &str, query: &str) -> Result<reqwest::Url, ObserveError> {
    let base = if base_url.ends_with('/') {
        base_url.to_owned()
    } else {
        format!("{base_url}/")
    };
    let mut url = reqwest::Url::parse(&base)
        .and_then(|u| u.join("api/v1/query"))
        .map_err(|e| ObserveError::Prometheus(e.to_string()))?;
    url.query_pairs_mut().append_pair("query", query);
    Ok(url)
}

/// Pure: what an answer means (see the module docs).
fn interpret(body: Response, query: &str) -> Result<Latency, ObserveError> {
    if body.status != "success" {
        return Err(ObserveError::Prometheus(body.error.unwrap_or(body.status)));
    }
    let Some(sample) = body.data.and_then(|d| d.result.into_iter().next()) else {
        return Err(ObserveError::NoSeries(query.to_owned()));
    };
    let value = sample
        .value
        .1
        .parse::<f64>()
        .map_err(|e| ObserveError::Prometheus(format!("value {:?}: {e}", sample.value.1)))?;
    Ok(if value.is_finite() {
        Latency::P95Ms(value * 1000.0)
    } else {
        Latency::Idle
    })
}

pub async fn p95(
    http: &reqwest::Client,
    base_url: &str,
    scope: &Scope<'_>,
    window: Dur,
) -> Result<Latency, ObserveError> {
    let err = |e: &dyn std::fmt::Display| ObserveError::Prometheus(e.to_string());
    let query = p95_query(scope, window);
    let resp = http
        .get(query_url(base_url, &query)?)
        .send()
        .await
        .map_err(|e| err(&e))?;
    let body: Response = resp.json().await.map_err(|e| err(&e))?;
    interpret(body, &query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, extract::Query, routing::get};
    use std::collections::HashMap;

    const WINDOW: Dur = Dur::from_secs(30);

    fn scope(labels: &PromLabels) -> Scope<'_> {
        Scope {
            namespace: "shop",
            deployment: "floodgate-app",
            labels,
        }
    }

    #[test]
    fn the_query_is_scoped_to_the_campaigns_namespace_and_deployment_pods() {
        let labels = PromLabels::default();
        assert_eq!(
            p95_query(&scope(&labels), WINDOW),
            "histogram_quantile(0.95, sum by (le) (rate(floodgate_http_request_duration_seconds_bucket\
             {namespace=\"shop\",pod=~\"floodgate-app-[a-z0-9]+-[a-z0-9]+\"}[30s])))"
        );
        let relabelled = PromLabels {
            namespace: "kubernetes_namespace".into(),
            pod: "kubernetes_pod_name".into(),
        };
        assert_eq!(
            selector(&scope(&relabelled)),
            "kubernetes_namespace=\"shop\",kubernetes_pod_name=~\"floodgate-app-[a-z0-9]+-[a-z0-9]+\""
        );
    }

    #[test]
    fn label_values_are_escaped_as_promql_strings_and_regex_literals() {
        let labels = PromLabels::default();
        let odd = Scope {
            namespace: "a\"b\\c",
            deployment: "app.v2",
            labels: &labels,
        };
        // The string literal escapes quote and backslash; the deployment's `.` is matched
        // literally (regex `\.`, written `\\.` inside the PromQL string).
        assert_eq!(
            selector(&odd),
            r#"namespace="a\"b\\c",pod=~"app\\.v2-[a-z0-9]+-[a-z0-9]+""#
        );
        assert_eq!(label_name("pod"), Ok("pod".into()));
        assert!(
            label_name("pod}").is_err() && label_name("1pod").is_err() && label_name("").is_err()
        );
    }

    /// A Prometheus that answers `body` to the expected query only.
    async fn serve(expected: String, body: &'static str) -> String {
        let app = Router::new().route(
            "/api/v1/query",
            get(move |Query(q): Query<HashMap<String, String>>| async move {
                if q.get("query") == Some(&expected) {
                    body.to_owned()
                } else {
                    r#"{"status":"error","error":"unexpected query"}"#.to_owned()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn ask(url: &str, window: Dur) -> Result<Latency, ObserveError> {
        let labels = PromLabels::default();
        p95(&reqwest::Client::new(), url, &scope(&labels), window).await
    }

    fn expected() -> String {
        p95_query(&scope(&PromLabels::default()), WINDOW)
    }

    #[tokio::test]
    async fn reads_the_scoped_instant_vector() {
        let url = serve(expected(), r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"0.212"]}]}}"#).await;
        assert_eq!(ask(&url, WINDOW).await.expect("ok"), Latency::P95Ms(212.0));
    }

    #[tokio::test]
    async fn nan_is_idle_but_no_series_is_unavailable() {
        let url = serve(expected(), r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"NaN"]}]}}"#).await;
        assert_eq!(ask(&url, WINDOW).await.expect("ok"), Latency::Idle);
        let url = serve(
            expected(),
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .await;
        let e = ask(&url, WINDOW).await.expect_err("no series");
        assert!(matches!(e, ObserveError::NoSeries(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("matched no series") && msg.contains("namespace=\"shop\""),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn errors_surface() {
        let url = serve(
            expected(),
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .await;
        let e = ask(&url, Dur::from_secs(60))
            .await
            .expect_err("wrong query");
        assert!(e.to_string().contains("unexpected query"), "{e}");
        assert!(ask("http://127.0.0.1:1", WINDOW).await.is_err());
    }
}
