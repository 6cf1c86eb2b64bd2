//! Queue depth: the app's `floodgate_queue_waiting{queue}` gauge, the maximum over the
//! Campaign's pods (every replica reports the same Redis-backed count, so a sum would count a
//! queue once per replica).
//!
//! The app exports the gauge only for queues someone joined, so a queue without a series is
//! empty *if* the app is scraped at all; whether it is, is asked separately
//! (`floodgate_runtime_config_version`, which every replica exports). Neither series: the
//! selector matches nothing and the signal is unavailable, as for p95.

use std::collections::BTreeMap;

use super::{
    super::depth::{RUNTIME_VERSION_GAUGE, WAITING_GAUGE},
    ObserveError, Response, Scope, query, quoted, regex_literal, selector,
};

/// `max by (queue)` of the gauge for the named queues (one query for all of them).
pub fn waiting_query(scope: &Scope<'_>, queue_ids: &[String]) -> String {
    let ids: Vec<String> = queue_ids.iter().map(|q| regex_literal(q)).collect();
    format!(
        "max by (queue) ({WAITING_GAUGE}{{{},queue=~{}}})",
        selector(scope),
        quoted(&ids.join("|"))
    )
}

/// How many of the Campaign's pods Prometheus has the app's version gauge for.
pub fn app_query(scope: &Scope<'_>) -> String {
    format!("count({RUNTIME_VERSION_GAUGE}{{{}}})", selector(scope))
}

/// Pure: per-queue depth from the two answers.
fn interpret(
    waiting: Response,
    app: Response,
    queue_ids: &[String],
    asked: &str,
) -> Result<BTreeMap<String, u64>, ObserveError> {
    let samples = waiting.data.map(|d| d.result).unwrap_or_default();
    let app_scraped = app.data.is_some_and(|d| !d.result.is_empty());
    if samples.is_empty() && !app_scraped {
        return Err(ObserveError::NoSeries(asked.to_owned()));
    }
    let mut by_queue: BTreeMap<String, u64> = queue_ids.iter().map(|q| (q.clone(), 0)).collect();
    for s in samples {
        let (Some(queue), Ok(value)) = (s.metric.get("queue"), s.value.1.parse::<f64>()) else {
            continue;
        };
        if let Some(n) = by_queue.get_mut(queue) {
            // a gauge is a count of users: finite and non-negative, rounded down
            *n = if value.is_finite() {
                value.max(0.0) as u64
            } else {
                0
            };
        }
    }
    Ok(by_queue)
}

/// Users waiting per queue of the Campaign, read from Prometheus.
pub async fn waiting(
    http: &super::PromClient,
    base_url: &str,
    scope: &Scope<'_>,
    queue_ids: &[String],
) -> Result<BTreeMap<String, u64>, ObserveError> {
    if queue_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let (wq, aq) = (waiting_query(scope, queue_ids), app_query(scope));
    let (w, a) = tokio::join!(query(http, base_url, &wq), query(http, base_url, &aq));
    interpret(w?, a?, queue_ids, &wq)
}

#[cfg(test)]
mod tests {
    use super::super::{PromLabels, stub};
    use super::*;

    fn scope(labels: &PromLabels) -> Scope<'_> {
        Scope {
            namespace: "shop",
            deployment: "floodgate-app",
            labels,
        }
    }

    fn ids(q: &[&str]) -> Vec<String> {
        q.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_scoped_query_for_every_queue_with_ids_matched_literally() {
        let labels = PromLabels::default();
        assert_eq!(
            waiting_query(&scope(&labels), &ids(&["concert-42", "a.b"])),
            "max by (queue) (floodgate_queue_waiting{namespace=\"shop\",\
             pod=~\"floodgate-app-[a-z0-9]+-[a-z0-9]+\",queue=~\"concert-42|a\\\\.b\"})"
        );
        assert_eq!(
            app_query(&scope(&labels)),
            "count(floodgate_runtime_config_version{namespace=\"shop\",\
             pod=~\"floodgate-app-[a-z0-9]+-[a-z0-9]+\"})"
        );
    }

    const ONE_QUEUE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"queue":"q1"},"value":[1.7e9,"1234"]}]}}"#;
    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const TWO_PODS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"2"]}]}}"#;

    async fn ask(
        waiting_body: &'static str,
        app_body: &'static str,
    ) -> Result<BTreeMap<String, u64>, ObserveError> {
        let labels = PromLabels::default();
        let q = ids(&["q1", "q2"]);
        let url = stub(vec![
            (waiting_query(&scope(&labels), &q), waiting_body),
            (app_query(&scope(&labels)), app_body),
        ])
        .await;
        waiting(
            &super::super::PromClient::default(),
            &url,
            &scope(&labels),
            &q,
        )
        .await
    }

    #[tokio::test]
    async fn a_queue_without_a_series_is_empty_when_the_app_is_scraped() {
        let got = ask(ONE_QUEUE, TWO_PODS).await.expect("ok");
        assert_eq!(got, BTreeMap::from([("q1".into(), 1234), ("q2".into(), 0)]));
        let got = ask(EMPTY, TWO_PODS).await.expect("ok");
        assert_eq!(got, BTreeMap::from([("q1".into(), 0), ("q2".into(), 0)]));
    }

    #[tokio::test]
    async fn no_series_at_all_is_unavailable_and_errors_surface() {
        let e = ask(EMPTY, EMPTY).await.expect_err("nothing scraped");
        assert!(matches!(e, ObserveError::NoSeries(_)), "{e:?}");
        let labels = PromLabels::default();
        let e = waiting(
            &super::super::PromClient::default(),
            "http://127.0.0.1:1",
            &scope(&labels),
            &ids(&["q1"]),
        )
        .await
        .expect_err("no Prometheus");
        assert!(matches!(e, ObserveError::Prometheus(_)), "{e:?}");
    }
}
