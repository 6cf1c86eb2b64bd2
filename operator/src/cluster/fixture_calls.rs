//! The API calls a [`super::fixtures::Scenario`] is made of: each asserts one request the
//! way the API server would see it and answers it.

use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::fixtures::{ApiServerVerifier, DEPLOYMENT, NS, assert_condition};

type Responder = tower_test::mock::SendResponse<Response<Body>>;

pub(super) fn respond(send: Responder, value: &Value) {
    let body = serde_json::to_vec(value).expect("json");
    send.send_response(
        Response::builder()
            .body(Body::from(body))
            .expect("response"),
    );
}

/// An API error the way the API server sends it: a `Status` with the HTTP code.
pub(super) fn respond_error(send: Responder, code: u16, reason: &str, message: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
}

async fn json_body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

/// The Deployment, its scale subresource, and the Campaign (`/status` for its status).
fn deployment_path(sub: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}{sub}")
}

fn campaign_path(sub: &str) -> String {
    format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/campaigns/xmas-tickets{sub}")
}

/// The request's query string has `part` (e.g. `fieldManager=floodgate-operator`).
fn assert_query_has(req: &Request<Body>, part: &str) {
    let query = req.uri().query().unwrap_or("");
    assert!(query.contains(part), "{}", req.uri());
}

/// Answers with `obj` carrying the patched `status`.
fn respond_with_status(send: Responder, obj: &impl serde::Serialize, status: &Value) {
    let mut updated = serde_json::to_value(obj).expect("json");
    updated["status"] = status.clone();
    respond(send, &updated);
}

fn scale(replicas: u32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": DEPLOYMENT, "namespace": NS}, "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}

impl ApiServerVerifier {
    pub(super) async fn next(&mut self) -> (Request<Body>, Responder) {
        self.0
            .next_request()
            .await
            .expect("the reconcile stopped calling the API server too early")
    }

    /// The next request, asserted to be `method` on `path`.
    async fn expect(&mut self, method: Method, path: &str) -> (Request<Body>, Responder) {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), method);
        assert_eq!(req.uri().path(), path);
        (req, send)
    }

    pub(super) async fn expect_no_more(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }

    pub(super) async fn finalizer_added(mut self, c: &Campaign) -> Self {
        let (req, send) = self.expect(Method::PATCH, &campaign_path("")).await;
        let body = json_body(req).await;
        assert_eq!(
            body,
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": ["floodgate.dev/campaign"]}])
        );
        let mut added = c.clone();
        added.metadata.finalizers = Some(vec!["floodgate.dev/campaign".into()]);
        respond(send, &serde_json::to_value(&added).expect("json"));
        self
    }

    pub(super) async fn hpa_list(mut self, items: Vec<Value>) -> Self {
        let path = format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers");
        let (_, send) = self.expect(Method::GET, &path).await;
        respond(
            send,
            &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": items}),
        );
        self
    }

    pub(super) async fn get_scale(mut self, replicas: u32) -> Self {
        let (_, send) = self.expect(Method::GET, &deployment_path("/scale")).await;
        respond(send, &scale(replicas));
        self
    }

    /// The Deployment does not exist: the API server's 404.
    pub(super) async fn get_scale_missing(mut self) -> Self {
        let (_, send) = self.expect(Method::GET, &deployment_path("/scale")).await;
        let msg = format!("deployments.apps \"{DEPLOYMENT}\" not found");
        respond_error(send, 404, "NotFound", &msg);
        self
    }

    /// The Deployment's selector, then its Running pods (one, on 127.0.0.1, where the test's
    /// metrics server listens).
    pub(super) async fn pods_of_deployment(mut self) -> Self {
        let (_, send) = self.expect(Method::GET, &deployment_path("")).await;
        respond(
            send,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOYMENT, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": DEPLOYMENT}}, "template": {}}}),
        );
        let pods = format!("/api/v1/namespaces/{NS}/pods");
        let (req, send) = self.expect(Method::GET, &pods).await;
        assert_query_has(&req, "labelSelector=app%3Dfloodgate-app");
        respond(
            send,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "app-1", "namespace": NS}, "status": {"phase": "Running", "podIP": "127.0.0.1"}},
            {"metadata": {"name": "app-2", "namespace": NS}, "status": {"phase": "Pending"}}]}),
        );
        self
    }

    pub(super) async fn patch_scale(mut self, replicas: u32) -> Self {
        let (req, send) = self.expect(Method::PATCH, &deployment_path("/scale")).await;
        assert_query_has(&req, "fieldManager=floodgate-operator");
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(
            json_body(req).await,
            json!({"spec": {"replicas": replicas}})
        );
        respond(send, &scale(replicas));
        self
    }

    pub(super) async fn event(self, reason: &str, type_: &str) -> Self {
        self.event_for("Campaign", reason, type_).await
    }

    pub(super) async fn event_for(mut self, kind: &str, reason: &str, type_: &str) -> Self {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
        let (req, send) = self.expect(Method::POST, &path).await;
        let body = json_body(req).await;
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["type"], type_, "{body}");
        assert_eq!(body["regarding"]["kind"], kind);
        assert_eq!(body["reportingController"], "floodgate-operator");
        respond(send, &body);
        self
    }

    /// A status patch the API server refuses (e.g. a lost lease's last write, or a 409).
    pub(super) async fn status_patch_fails(mut self) -> Self {
        let (_, send) = self.expect(Method::PATCH, &campaign_path("/status")).await;
        respond_error(send, 500, "InternalError", "etcdserver: request timed out");
        self
    }

    pub(super) async fn status_patch(mut self, c: &Campaign, check: impl FnOnce(&Value)) -> Self {
        let (req, send) = self.expect(Method::PATCH, &campaign_path("/status")).await;
        let query = req.uri().query().unwrap_or("").to_owned();
        assert!(
            query.contains("fieldManager=floodgate-operator") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body = json_body(req).await;
        assert_eq!(body["kind"], "Campaign");
        check(&body["status"]);
        respond_with_status(send, c, &body["status"]);
        self
    }

    pub(super) async fn queue_status_patch(mut self, q: &QueueConfig) -> Self {
        let path =
            format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/queueconfigs/concert-42/status");
        let (req, send) = self.expect(Method::PATCH, &path).await;
        assert_query_has(&req, "fieldManager=floodgate-operator");
        let body = json_body(req).await;
        let status = &body["status"];
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(status["publishedVersion"], 1);
        assert_condition(status, "ConfigPublished", "True");
        assert_condition(status, "Ready", "True");
        respond_with_status(send, q, status);
        self
    }

    /// For tests that call one platform method: answers its single HPA list.
    pub async fn answer_empty_hpa_list(self) {
        self.hpa_list(vec![]).await.expect_no_more().await;
    }

    pub(super) async fn finalizer_removed(mut self, c: &Campaign) -> Self {
        let (req, send) = self.expect(Method::PATCH, &campaign_path("")).await;
        assert_eq!(
            json_body(req).await,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "floodgate.dev/campaign"},
                   {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
        let mut gone = c.clone();
        gone.metadata.finalizers = None;
        respond(send, &serde_json::to_value(&gone).expect("json"));
        self
    }
}
