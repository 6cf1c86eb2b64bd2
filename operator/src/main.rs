//! `floodgate-operator`: a thin CLI over the library.
//!
//! - `crd`: print the CustomResourceDefinitions (or write them into a folder).
//! - `controller`: run in a cluster (leader election, both controllers).
//! - `run --manifests DIR`: run the same reconcilers on YAML files, without a cluster.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use floodgate_operator::{
    cluster::{controller, leader},
    crd, http,
    local::{platform::LocalPlatform, run},
    observe::{
        depth::{AppMetricsDepth, QueueDepthSource, RedisDepth},
        prometheus,
    },
    reconcile::Context,
    store::{RedisTarget, RedisTls},
    telemetry::Metrics,
};

#[derive(Parser)]
#[command(name = "floodgate-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD into --out-dir).
    Crd {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run against a Kubernetes cluster.
    Controller {
        #[command(flatten)]
        common: Common,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        #[arg(long, default_value = "floodgate-operator")]
        lease_name: String,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// The only namespace whose Campaigns and QueueConfigs this operator serves (empty:
        /// every namespace). One operator serves one Redis, so one install of the app.
        #[arg(long, env = "FLOODGATE_WATCH_NAMESPACE", default_value = "")]
        watch_namespace: String,
    },
    /// Run on Campaign and QueueConfig YAML files, reporting scaling instead of applying it.
    Run {
        #[command(flatten)]
        common: Common,
        /// Folder of Campaign and QueueConfig manifests, re-read when it changes.
        #[arg(long)]
        manifests: PathBuf,
        /// The app's metrics endpoint.
        #[arg(
            long,
            env = "FLOODGATE_APP_METRICS_URL",
            default_value = "http://127.0.0.1:8080/metrics"
        )]
        app_metrics_url: String,
        /// Where a status YAML per resource is written (default: DIR/.status).
        #[arg(long)]
        status_dir: Option<PathBuf>,
        /// Replicas the simulated Deployment starts with.
        #[arg(long, default_value_t = 1)]
        initial_replicas: u32,
    },
}

#[derive(Args)]
struct Common {
    /// The app's Redis: one node's URL, or with --redis-mode=cluster the comma-separated seed
    /// nodes of a Redis Cluster (the same values as the app's).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:63799")]
    redis_url: String,
    /// `single` or `cluster` (see the app's FLOODGATE_REDIS_MODE).
    #[arg(long, env = "FLOODGATE_REDIS_MODE", default_value = "single")]
    redis_mode: floodgate_crds::redis_conn::RedisMode,
    #[arg(long, env = "FLOODGATE_REDIS_PREFIX", default_value = "fg:")]
    redis_prefix: String,
    /// PEM bundle of the CAs a `rediss://` REDIS_URL is verified against (else the system's).
    #[arg(long, env = "FLOODGATE_REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a Redis with `tls-auth-clients`; with the key.
    #[arg(
        long,
        env = "FLOODGATE_REDIS_CLIENT_CERT_FILE",
        requires = "redis_client_key_file"
    )]
    redis_client_cert_file: Option<PathBuf>,
    #[arg(
        long,
        env = "FLOODGATE_REDIS_CLIENT_KEY_FILE",
        requires = "redis_client_cert_file"
    )]
    redis_client_key_file: Option<PathBuf>,
    /// PEM bundle of the CAs an `https://` Prometheus is verified against (else the system's).
    #[arg(long, env = "FLOODGATE_PROMETHEUS_CA_FILE")]
    prometheus_ca_file: Option<PathBuf>,
    /// Address of the operator's own /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "FLOODGATE_OPERATOR_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    listen: SocketAddr,
    /// Where queue depth is read.
    #[arg(long, value_enum, default_value_t = DepthSource::AppMetrics)]
    queue_depth: DepthSource,
    /// Redis key per queue when --queue-depth=redis; {prefix} and {queue} are replaced.
    #[arg(long, default_value = "{prefix}{q:{queue}}:waiting")]
    redis_depth_key: String,
    /// Prometheus label holding a series' namespace (scopes p95 queries to the Campaign's).
    #[arg(long, env = "FLOODGATE_PROMETHEUS_NAMESPACE_LABEL", default_value = "namespace", value_parser = prometheus::label_name)]
    prometheus_namespace_label: String,
    /// Prometheus label holding a series' pod (scopes p95 queries to the target's pods).
    #[arg(long, env = "FLOODGATE_PROMETHEUS_POD_LABEL", default_value = "pod", value_parser = prometheus::label_name)]
    prometheus_pod_label: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum DepthSource {
    /// The app's floodgate_queue_waiting gauge.
    AppMetrics,
    /// A Redis key per queue (see --redis-depth-key).
    Redis,
}

impl Common {
    async fn parts(
        &self,
    ) -> anyhow::Result<(RedisTarget, Box<dyn QueueDepthSource>, Arc<Metrics>)> {
        let tls = RedisTls {
            ca_file: self.redis_ca_file.clone(),
            client_cert_file: self.redis_client_cert_file.clone(),
            client_key_file: self.redis_client_key_file.clone(),
        };
        let redis =
            RedisTarget::connect_tls(self.redis_mode, &self.redis_url, &tls, &self.redis_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to Redis at {}: {e}", self.redis_url))?;
        let depth: Box<dyn QueueDepthSource> = match self.queue_depth {
            DepthSource::AppMetrics => Box::new(AppMetricsDepth),
            DepthSource::Redis => Box::new(RedisDepth {
                conn: redis.conn.clone(),
                prefix: self.redis_prefix.clone(),
                key_template: self.redis_depth_key.clone(),
            }),
        };
        Ok((redis, depth, Arc::new(Metrics::default())))
    }

    fn prometheus_client(&self) -> anyhow::Result<prometheus::PromClient> {
        prometheus::PromClient::new(self.prometheus_ca_file.as_deref())
    }

    fn prometheus_labels(&self) -> prometheus::PromLabels {
        prometheus::PromLabels {
            namespace: self.prometheus_namespace_label.clone(),
            pod: self.prometheus_pod_label.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Crd { out_dir: None } => print!("{}", crd::render_all()?),
        Command::Crd { out_dir: Some(dir) } => {
            for (file, c) in crd::all() {
                std::fs::write(dir.join(file), crd::to_yaml(&c)?)?;
            }
        }
        Command::Run {
            common,
            manifests,
            app_metrics_url,
            status_dir,
            initial_replicas,
        } => {
            let (redis, depth, metrics) = common.parts().await?;
            let ready = Arc::new(AtomicBool::new(true));
            let addr = http::spawn(
                common.listen,
                http::Health {
                    ready,
                    metrics: metrics.clone(),
                },
            )
            .await?;
            let status_dir = status_dir.unwrap_or_else(|| manifests.join(".status"));
            tracing::info!(manifests = %manifests.display(), status_dir = %status_dir.display(), metrics = %addr, "local mode");
            let platform = LocalPlatform::new(app_metrics_url, status_dir, initial_replicas)
                .with_secrets_dir(manifests.clone());
            let ctx = Arc::new(
                Context::new(platform, redis, depth, metrics)
                    .with_prometheus_labels(common.prometheus_labels())
                    .with_prometheus_client(common.prometheus_client()?),
            );
            let opts = run::Options {
                manifests,
                poll: Duration::from_secs(1),
            };
            run::run(opts, ctx, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        }
        Command::Controller {
            common,
            lease_namespace,
            lease_name,
            identity,
            watch_namespace,
        } => {
            let shutdown = leader::shutdown_on_signals()?;
            let (redis, depth, metrics) = common.parts().await?;
            let ready = Arc::new(AtomicBool::new(false));
            http::spawn(
                common.listen,
                http::Health {
                    ready: ready.clone(),
                    metrics: metrics.clone(),
                },
            )
            .await?;
            let client = kube::Client::try_default().await?;
            let identity =
                identity.unwrap_or_else(|| format!("floodgate-operator-{}", std::process::id()));
            let watch = Some(watch_namespace).filter(|ns| !ns.is_empty());
            tracing::info!(namespace = watch.as_deref().unwrap_or("<all>"), %identity, "cluster mode");
            let lease = leader::LeaseConfig {
                namespace: lease_namespace.clone(),
                name: lease_name,
                identity,
                timings: leader::Timings::OPERATOR,
            };
            let leases = kube::Api::namespaced(client.clone(), &lease_namespace);
            let mut elector = leader::Elector::new(leases, lease);
            let parts = controller::CtxParts {
                redis,
                depth,
                metrics: metrics.clone(),
                prometheus_labels: common.prometheus_labels(),
                prometheus: common.prometheus_client()?,
            };
            let controllers =
                |stop| controller::run(client, parts, ready.clone(), watch.as_deref(), stop);
            let leading = leader::Leading {
                metrics: &metrics,
                ready: &ready,
                grace: SHUTDOWN_GRACE,
            };
            leader::lead(&mut elector, controllers, shutdown, leading).await?;
        }
    }
    Ok(())
}

/// How long in-flight reconciles may run after SIGTERM before the Lease is released anyway
/// (the chart's terminationGracePeriodSeconds must exceed it).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
