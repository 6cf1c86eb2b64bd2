//! The scenario-facing API: a virtual user with per-VU state (logged-in user, queue token),
//! JSON requests with tags, checks, groups and think time. Requests record latency from
//! the iteration's intended start (the first request of an open-model iteration) as well
//! as service time from the actual send.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::client::{Conn, Response, Target};
use crate::metrics::{ReqKey, TagSet};
use crate::recorder::{CheckKey, Recorder};
use crate::think::between_secs;
use crate::wire::Outgoing;

/// The root group's tag, shared so resetting it each iteration does not allocate.
fn no_group() -> Arc<str> {
    static ROOT: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    ROOT.clone()
}

/// What every VU of a run shares.
pub struct RunContext {
    pub target: Target,
    pub recorder: Arc<Recorder>,
    /// Scenario parameters from `--param k=v`, the environment, or discovery in setup.
    pub params: RwLock<BTreeMap<String, String>>,
    pub request_timeout: Duration,
    /// Facts scenarios note for their invariant checks (who got a coupon, which seat was paid).
    pub facts: std::sync::Mutex<Vec<(String, String)>>,
}

impl RunContext {
    pub fn param(&self, key: &str) -> Option<String> {
        let params = self.params.read().unwrap_or_else(|p| p.into_inner());
        params.get(key).cloned()
    }

    pub fn set_param(&self, key: &str, value: String) {
        let mut params = self.params.write().unwrap_or_else(|p| p.into_inner());
        params.insert(key.to_string(), value);
    }

    pub fn record_fact(&self, kind: &str, value: String) {
        self.facts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind.to_string(), value));
    }

    pub fn facts(&self, kind: &str) -> Vec<String> {
        let facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        facts
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// State a VU keeps across iterations, like a browser session.
#[derive(Default, Debug, Clone)]
pub struct VuState {
    pub email: Option<String>,
    pub access_token: Option<String>,
    pub queue_token: Option<String>,
    pub data: BTreeMap<String, serde_json::Value>,
}

pub struct Vu {
    /// Global VU number (unique across shards of a distributed run).
    pub id: u64,
    pub iteration: u64,
    pub state: VuState,
    pub rng: StdRng,
    ctx: Arc<RunContext>,
    scenario: Arc<str>,
    group: Arc<str>,
    tags: Option<Arc<TagSet>>,
    intended: Option<Instant>,
    /// When the current iteration will be cut off; a request timer past it is pointless.
    deadline: Option<Instant>,
    conn: Conn,
    /// Parsed request targets by path, since scenarios repeat the same few.
    uris: Vec<(String, http::Uri)>,
    /// Interned tag strings (request names, check names), so steady-state requests and
    /// checks do not allocate their tags.
    names: Vec<Arc<str>>,
    /// `--param think_scale=F` multiplies every think time (0 removes it for benchmarks).
    think_scale: f64,
}

impl Vu {
    pub fn new(id: u64, ctx: Arc<RunContext>, scenario: &str, tags: Option<Arc<TagSet>>) -> Vu {
        let think_scale = ctx
            .param("think_scale")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|f| f.is_finite() && *f >= 0.0)
            .unwrap_or(1.0);
        Vu {
            id,
            iteration: 0,
            state: VuState::default(),
            rng: StdRng::seed_from_u64(id ^ 0x9e37_79b9_7f4a_7c15),
            ctx,
            scenario: Arc::from(scenario),
            group: no_group(),
            tags,
            intended: None,
            deadline: None,
            conn: Conn::default(),
            uris: Vec::new(),
            names: Vec::new(),
            think_scale,
        }
    }

    fn uri_for(&mut self, path: &str) -> anyhow::Result<http::Uri> {
        if let Some((_, u)) = self.uris.iter().find(|(p, _)| p == path) {
            return Ok(u.clone());
        }
        let u = self.ctx.target.origin_form(path)?;
        if self.uris.len() < 64 {
            self.uris.push((path.to_string(), u.clone()));
        }
        Ok(u)
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.iter().find(|n| &***n == name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        if self.names.len() < 64 {
            self.names.push(n.clone());
        }
        n
    }

    pub fn ctx(&self) -> &Arc<RunContext> {
        &self.ctx
    }

    pub fn param(&self, key: &str) -> Option<String> {
        self.ctx.param(key)
    }

    /// Marks an iteration's intended start; the next request measures latency from it.
    pub fn begin_iteration(&mut self, intended: Instant, deadline: Option<Instant>) {
        self.intended = Some(intended);
        self.deadline = deadline;
        self.group = no_group();
    }

    /// Enters a k6 group: later requests and checks carry `group=::name`.
    pub fn group(&mut self, name: &str) {
        self.group = Arc::from(format!("::{name}").as_str());
    }

    pub fn end_group(&mut self) {
        self.group = no_group();
    }

    pub fn get(&mut self, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder::new(self, Method::GET, path.into())
    }

    pub fn post(&mut self, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder::new(self, Method::POST, path.into())
    }

    pub fn put(&mut self, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder::new(self, Method::PUT, path.into())
    }

    pub fn delete(&mut self, path: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder::new(self, Method::DELETE, path.into())
    }

    /// A k6 check: records pass or fail and returns the outcome.
    pub fn check(&mut self, name: &str, ok: bool) -> bool {
        let key = CheckKey {
            scenario: self.scenario.clone(),
            group: self.group.clone(),
            name: self.intern(name),
        };
        self.ctx.recorder.check(self.id, &key, ok);
        ok
    }

    /// Think time: sleeps uniformly between `min` and `max` seconds (Locust's `between`).
    pub async fn between(&mut self, min: f64, max: f64) {
        let d = between_secs(&mut self.rng, min, max);
        self.think(d).await;
    }

    /// k6's `sleep(secs)`.
    /// `--param think_scale=0` removes the reports' think time (throughput benchmarks);
    /// other values stretch or shrink it.
    pub async fn sleep(&mut self, secs: f64) {
        let scale = self
            .param("think_scale")
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(1.0);
        let secs = (secs * scale).max(0.0);
        if secs > 0.0 {
            self.think(Duration::from_secs_f64(secs)).await;
        }
    }

    /// Think time is never latency: if the iteration has not sent its first request yet,
    /// that request's intended start moves by the pause, so a late iteration start still
    /// counts but the planned pause does not.
    async fn think(&mut self, d: Duration) {
        let d = d.mul_f64(self.think_scale);
        if d.is_zero() {
            return;
        }
        if let Some(intended) = self.intended.as_mut() {
            *intended += d;
        }
        tokio::time::sleep(d).await;
    }

    fn method_name(m: &Method) -> &'static str {
        match *m {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::DELETE => "DELETE",
            Method::PATCH => "PATCH",
            _ => "OTHER",
        }
    }
}

/// A request being built; `send` performs it and records its metrics.
pub struct RequestBuilder<'a> {
    vu: &'a mut Vu,
    method: Method,
    path: String,
    name: Option<&'a str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    expected: Option<&'a [u16]>,
    anonymous: bool,
}

impl<'a> RequestBuilder<'a> {
    fn new(vu: &'a mut Vu, method: Method, path: String) -> Self {
        RequestBuilder {
            vu,
            method,
            path,
            name: None,
            headers: Vec::new(),
            body: None,
            expected: None,
            anonymous: false,
        }
    }

    /// The `name` tag (k6's `tags: {name}`); defaults to the path, so name URLs with ids.
    pub fn name(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    pub fn json<T: Serialize>(mut self, body: &T) -> Self {
        // Serializing plain scenario structs cannot fail; an empty body would show as a 4xx.
        self.body = Some(Bytes::from(serde_json::to_vec(body).unwrap_or_default()));
        self
    }

    /// Statuses that count as success for `http_req_failed` (default 200–399, as in k6).
    pub fn expect(mut self, statuses: &'a [u16]) -> Self {
        self.expected = Some(statuses);
        self
    }

    /// Do not send the VU's bearer token.
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    pub async fn send(self) -> Response {
        let vu = self.vu;
        let ctx = vu.ctx.clone();
        let name = match &self.name {
            Some(n) => vu.intern(n),
            None => vu.intern(self.path.split('?').next().unwrap_or("")),
        };
        let bearer = if self.anonymous {
            None
        } else {
            vu.state.access_token.clone()
        };
        let (method, headers, body) = (self.method, self.headers, self.body);
        let sent = Instant::now();
        let intended = vu.intended.take().unwrap_or(sent).min(sent);
        let outcome = match vu.uri_for(&self.path) {
            Err(e) => Ok(Err(anyhow::anyhow!("bad request path: {e}"))),
            Ok(uri) => {
                let req = Outgoing {
                    method: &method,
                    target: uri.path_and_query().map_or("/", |p| p.as_str()),
                    host: ctx.target.host(),
                    headers: &headers,
                    bearer: bearer.as_deref(),
                    body: body.as_deref(),
                };
                let exchange = vu.conn.send(&ctx.target, &req);
                // The iteration deadline already bounds the request when it comes first.
                match vu.deadline {
                    Some(d) if d <= sent + ctx.request_timeout => Ok(exchange.await),
                    _ => tokio::time::timeout(ctx.request_timeout, exchange).await,
                }
            }
        };
        let resp = match outcome {
            Ok(Ok((parts, body))) => Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
                error: None,
            },
            Ok(Err(e)) => Response::failed(e.to_string()),
            Err(_) => Response::failed("request timeout".into()),
        };
        let done = Instant::now();
        let expected = match self.expected {
            Some(list) => list.contains(&resp.status),
            None => resp.ok(),
        };
        let key = ReqKey {
            scenario: vu.scenario.clone(),
            group: vu.group.clone(),
            name,
            method: Vu::method_name(&method),
            status: resp.status,
            expected,
            extra: vu.tags.clone(),
        };
        ctx.recorder.request(vu.id, &key, intended, sent, done);
        resp
    }
}
