//! p95 of the app's request latency over the Campaign's window.

use floodgate_crds::Dur;

use super::{super::p95::LATENCY_HISTOGRAM, ObserveError, Response, Scope, query, selector};
use crate::scaling::Latency;

pub fn p95_query(scope: &Scope<'_>, window: Dur) -> String {
    format!(
        "histogram_quantile(0.95, sum by (le) (rate({LATENCY_HISTOGRAM}_bucket{{{}}}[{window}])))",
        selector(scope)
    )
}

/// Pure: what a successful answer means (see the module docs).
fn interpret(body: Response, query: &str) -> Result<Latency, ObserveError> {
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
    http: &super::PromClient,
    base_url: &str,
    scope: &Scope<'_>,
    window: Dur,
) -> Result<Latency, ObserveError> {
    let q = p95_query(scope, window);
    interpret(query(http, base_url, &q).await?, &q)
}

#[cfg(test)]
mod tests {
    use super::super::{PromLabels, label_name, stub};
    use super::*;

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
        stub(vec![(expected, body)]).await
    }

    async fn ask(url: &str, window: Dur) -> Result<Latency, ObserveError> {
        let labels = PromLabels::default();
        p95(
            &super::super::PromClient::default(),
            url,
            &scope(&labels),
            window,
        )
        .await
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
