//! The signals from the Prometheus HTTP API, when the Campaign names a Prometheus: p95
//! (`p95.rs`) and queue depth (`waiting.rs`). Prometheus already keeps every pod's history,
//! so neither the operator's own window nor a scrape of the pods is needed.
//!
//! Every query is scoped to the Campaign's app: its namespace and the pods of its target
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

use serde::Deserialize;

use super::ObserveError;

mod client;
mod p95;
pub mod trigger;
mod waiting;

pub use client::PromClient;
pub use p95::{p95, p95_query};
pub use waiting::{app_query, waiting, waiting_query};

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
pub(super) fn quoted(value: &str) -> String {
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
pub(super) fn regex_literal(value: &str) -> String {
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

#[derive(Deserialize)]
pub(super) struct Response {
    pub(super) status: String,
    #[serde(default)]
    pub(super) data: Option<Data>,
    #[serde(default)]
    pub(super) error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Data {
    pub(super) result: Vec<VectorSample>,
}

#[derive(Deserialize)]
pub(super) struct VectorSample {
    /// The series' labels.
    #[serde(default)]
    pub(super) metric: std::collections::BTreeMap<String, String>,
    /// `[unix time, "value"]`
    pub(super) value: (f64, String),
}

/// The instant query's URL on a Prometheus base URL (with or without a path prefix).
pub(super) fn query_url(base_url: &str, query: &str) -> Result<reqwest::Url, ObserveError> {
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

/// HTTP 401/403: why, in the user's terms.
pub(super) fn refused(status: u16, http: &PromClient) -> Option<String> {
    let how = if http.sends_credentials() {
        "the credentials from the authRef Secret were refused"
    } else {
        "it needs credentials (set authRef)"
    };
    (status == 401 || status == 403).then(|| format!("Prometheus answered HTTP {status}: {how}"))
}

/// Runs one instant query and returns the parsed answer (an error status is an error).
pub(super) async fn query(
    http: &PromClient,
    base_url: &str,
    query: &str,
) -> Result<Response, ObserveError> {
    let err = |e: &dyn std::fmt::Display| ObserveError::Prometheus(e.to_string());
    let (status, bytes) = http
        .fetch(query_url(base_url, query)?.as_str())
        .await
        .map_err(ObserveError::Prometheus)?;
    if let Some(why) = refused(status, http) {
        return Err(ObserveError::Prometheus(why));
    }
    let body: Response = serde_json::from_slice(&bytes).map_err(|e| err(&e))?;
    if body.status != "success" {
        return Err(ObserveError::Prometheus(body.error.unwrap_or(body.status)));
    }
    Ok(body)
}

/// A Prometheus for the tests: answers each expected query with its body, anything else with
/// an error, so the tests also check the PromQL sent.
#[cfg(test)]
pub(super) async fn stub(answers: Vec<(String, &'static str)>) -> String {
    use axum::{Router, extract::Query, routing::get};
    use std::collections::HashMap;
    let app = Router::new().route(
        "/api/v1/query",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let asked = q.get("query").cloned().unwrap_or_default();
            let body = answers
                .iter()
                .find(|(expected, _)| *expected == asked)
                .map_or(
                    r#"{"status":"error","error":"unexpected query"}"#,
                    |(_, body)| *body,
                );
            async move { body.to_owned() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
