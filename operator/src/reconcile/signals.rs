//! A Campaign's credentials and extra signals, resolved before observing: the Secrets its
//! authRefs name are read (one `get` each per resync, so a rotated Secret is picked up), the
//! Prometheus client and Redis connection built from them, and the triggers paired with the
//! client each reads through. A missing Secret or key never fails the reconcile: the signals
//! that need it are unavailable and MetricsAvailable=False names the Secret and the key.

use std::collections::BTreeMap;

use floodgate_crds::{
    redis_conn::RedisConn,
    v1alpha1::{Campaign, PrometheusAuthRef, PrometheusTrigger, RedisStreamTrigger, TriggerSpec},
};

use super::{Context, Platform};
use crate::observe::{
    credentials::{self, Found, SecretData},
    depth::{QueueDepthSource, Unreadable},
    prometheus::PromClient,
    streams::Backlog,
    triggers::{Source, Trigger},
};

/// What the observe step of one Campaign uses.
pub struct Resolved {
    /// For the Campaign's Prometheus (its authRef applied); a refusing client when the
    /// credentials are missing.
    pub prometheus: PromClient,
    /// Queue depth through the Campaign's Redis credentials (`None`: the operator's source).
    pub depth: Option<Box<dyn QueueDepthSource>>,
    pub triggers: Vec<Trigger>,
}

/// Secrets read once per resync, by name.
struct Secrets<'a, P> {
    ctx: &'a Context<P>,
    namespace: &'a str,
    read: BTreeMap<String, Result<Option<SecretData>, String>>,
}

impl<P: Platform> Secrets<'_, P> {
    async fn load(&mut self, name: &str) {
        if self.read.contains_key(name) {
            return;
        }
        let got = self
            .ctx
            .platform
            .secret(self.namespace, name)
            .await
            .map_err(|e| format!("reading Secret {}/{name}: {e}", self.namespace));
        self.read.insert(name.to_owned(), got);
    }

    /// The Secret `name` as found (after [`Self::load`]), or why it could not be read.
    fn found(&self, name: &str) -> Result<Found<'_>, String> {
        match self.read.get_key_value(name) {
            Some((name, Ok(data))) => Ok(Found {
                namespace: self.namespace,
                name,
                data: data.as_ref(),
            }),
            Some((_, Err(e))) => Err(e.clone()),
            None => Err(format!("Secret {}/{name} not read", self.namespace)),
        }
    }

    async fn prometheus(
        &mut self,
        base: &PromClient,
        auth: Option<&PrometheusAuthRef>,
    ) -> Result<PromClient, String> {
        let Some(auth) = auth else {
            return Ok(base.clone());
        };
        self.load(&auth.secret_name).await;
        let creds = credentials::prometheus(auth, &self.found(&auth.secret_name)?)?;
        self.ctx.clients.prometheus(base, &creds)
    }
}

/// Resolves the Campaign's credentials and triggers.
pub async fn resolve<P: Platform>(c: &Campaign, ctx: &Context<P>) -> Resolved {
    let namespace = c.metadata.namespace.as_deref().unwrap_or("default");
    let metrics = &c.spec.scaling.metrics;
    let mut secrets = Secrets {
        ctx,
        namespace,
        read: BTreeMap::new(),
    };
    let campaign_prom = metrics.prometheus.as_ref();
    let prometheus = secrets
        .prometheus(
            &ctx.prometheus,
            campaign_prom.and_then(|p| p.auth_ref.as_ref()),
        )
        .await;
    let redis: Result<RedisConn, String> = match &metrics.redis_auth_ref {
        None => Ok(ctx.redis.conn.clone()),
        Some(auth) => {
            secrets.load(&auth.secret_name).await;
            secrets
                .found(&auth.secret_name)
                .and_then(|found| credentials::redis(auth, &found))
                .and_then(|creds| ctx.clients.redis(&ctx.redis.address, &creds))
        }
    };
    let depth = match (&metrics.redis_auth_ref, &redis) {
        (None, _) => None,
        (Some(_), _) if ctx.depth.reads_app_metrics() => None,
        (Some(_), Ok(conn)) => ctx.depth.through(conn.clone()),
        (Some(_), Err(why)) => Some(Box::new(Unreadable(why.clone())) as Box<dyn QueueDepthSource>),
    };
    let mut triggers = Vec::new();
    for t in &c.spec.scaling.triggers {
        triggers.push(
            trigger(
                t,
                campaign_prom.map(|p| p.url.as_str()),
                &prometheus,
                &redis,
                &mut secrets,
            )
            .await,
        );
    }
    let prometheus = prometheus.unwrap_or_else(|why| ctx.prometheus.refusing(&why));
    Resolved {
        prometheus,
        depth,
        triggers,
    }
}

async fn trigger<P: Platform>(
    t: &TriggerSpec,
    campaign_url: Option<&str>,
    campaign_client: &Result<PromClient, String>,
    redis: &Result<RedisConn, String>,
    secrets: &mut Secrets<'_, P>,
) -> Trigger {
    let (source, target, activation) = match (&t.prometheus, &t.redis_stream) {
        (Some(p), _) => prometheus_trigger(p, campaign_url, campaign_client, secrets).await,
        (None, Some(s)) => stream_trigger(s, redis),
        (None, None) => {
            let source = Source::Stream {
                conn: Err("neither prometheus nor redisStream is set".into()),
                stream: String::new(),
                group: String::new(),
                backlog: Backlog::Pending,
            };
            (source, 1.0, None)
        }
    };
    Trigger {
        name: t.name.clone(),
        source,
        target,
        activation,
    }
}

/// A Prometheus trigger: the campaign's server and credentials, or another server with only
/// the trigger's own.
async fn prometheus_trigger<P: Platform>(
    p: &PrometheusTrigger,
    campaign_url: Option<&str>,
    campaign_client: &Result<PromClient, String>,
    secrets: &mut Secrets<'_, P>,
) -> (Source, f64, Option<f64>) {
    let (url, client) = match &p.server_address {
        // Another server gets only the trigger's own credentials.
        Some(url) => {
            let base = secrets.ctx.prometheus.clone();
            (
                Some(url.as_str()),
                secrets.prometheus(&base, p.auth_ref.as_ref()).await,
            )
        }
        None => (campaign_url, campaign_client.clone()),
    };
    let client = match url {
        Some(_) => client,
        None => Err("no Prometheus: set serverAddress or scaling.metrics.prometheus.url".into()),
    };
    let source = Source::Prometheus {
        url: url.unwrap_or_default().to_owned(),
        query: p.query.clone(),
        client: Box::new(client),
    };
    (source, p.threshold, p.activation_threshold)
}

/// A Redis Streams trigger: its pending entries or its lag, through the campaign's Redis.
fn stream_trigger(
    s: &RedisStreamTrigger,
    redis: &Result<RedisConn, String>,
) -> (Source, f64, Option<f64>) {
    let (backlog, target) = match (s.pending_entries_count, s.lag_count) {
        (Some(n), _) => (Backlog::Pending, n),
        (None, Some(n)) => (Backlog::Lag, n),
        (None, None) => (Backlog::Pending, 0),
    };
    let source = Source::Stream {
        conn: redis.clone(),
        stream: s.stream.clone(),
        group: s.consumer_group.clone(),
        backlog,
    };
    (source, target as f64, None)
}
