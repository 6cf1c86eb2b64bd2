//! p95 from the Prometheus HTTP API, when the Campaign names a Prometheus: it already keeps
//! every pod's history, so the operator's own window is not needed.

use floodgate_crds::Dur;
use serde::Deserialize;

use super::{ObserveError, p95::LATENCY_HISTOGRAM};
use crate::scaling::Latency;

pub fn p95_query(window: Dur) -> String {
    format!("histogram_quantile(0.95, sum by (le) (rate({LATENCY_HISTOGRAM}_bucket[{window}])))")
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

pub async fn p95(
    http: &reqwest::Client,
    base_url: &str,
    window: Dur,
) -> Result<Latency, ObserveError> {
    let err = |e: &dyn std::fmt::Display| ObserveError::Prometheus(e.to_string());
    let base = if base_url.ends_with('/') {
        base_url.to_owned()
    } else {
        format!("{base_url}/")
    };
    let mut url = reqwest::Url::parse(&base)
        .and_then(|u| u.join("api/v1/query"))
        .map_err(|e| err(&e))?;
    url.query_pairs_mut()
        .append_pair("query", &p95_query(window));
    let resp = http.get(url).send().await.map_err(|e| err(&e))?;
    let body: Response = resp.json().await.map_err(|e| err(&e))?;
    if body.status != "success" {
        return Err(ObserveError::Prometheus(body.error.unwrap_or(body.status)));
    }
    // No series (nothing scraped yet) or NaN (no requests in the window): nothing to say.
    let value = body
        .data
        .and_then(|d| d.result.into_iter().next())
        .and_then(|s| s.value.1.parse::<f64>().ok());
    Ok(match value {
        Some(v) if v.is_finite() => Latency::P95Ms(v * 1000.0),
        _ => Latency::Idle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, extract::Query, routing::get};
    use std::collections::HashMap;

    async fn serve(body: &'static str) -> String {
        let app = Router::new().route(
            "/api/v1/query",
            get(move |Query(q): Query<HashMap<String, String>>| async move {
                // Only the expected query gets an answer, so the test also checks the PromQL.
                if q.get("query").map(String::as_str)
                    == Some(p95_query(Dur::from_secs(30)).as_str())
                {
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

    #[tokio::test]
    async fn reads_the_instant_vector() {
        let url = serve(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"0.212"]}]}}"#).await;
        let got = p95(&reqwest::Client::new(), &url, Dur::from_secs(30))
            .await
            .expect("ok");
        assert_eq!(got, Latency::P95Ms(212.0));
    }

    #[tokio::test]
    async fn nan_and_empty_mean_idle_and_errors_surface() {
        let url = serve(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"NaN"]}]}}"#).await;
        assert_eq!(
            p95(&reqwest::Client::new(), &url, Dur::from_secs(30))
                .await
                .expect("ok"),
            Latency::Idle
        );
        let url = serve(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).await;
        assert_eq!(
            p95(&reqwest::Client::new(), &url, Dur::from_secs(30))
                .await
                .expect("ok"),
            Latency::Idle
        );
        assert!(
            p95(&reqwest::Client::new(), &url, Dur::from_secs(60))
                .await
                .is_err(),
            "wrong query is an error"
        );
        assert!(
            p95(
                &reqwest::Client::new(),
                "http://127.0.0.1:1",
                Dur::from_secs(30)
            )
            .await
            .is_err()
        );
    }
}
