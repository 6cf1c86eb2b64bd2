//! The extra signals against real components, credentials from Secret data: a real
//! Prometheus (Debian's) with basic auth (`--web.config.file`, bcrypt), the same Prometheus
//! behind a real nginx that checks a bearer token, and a real redis-server with
//! `requirepass` and an ACL user holding a stream with a consumer group. The whole pipeline
//! runs in `run --manifests` mode with Secret manifests in the folder: it scales on the
//! triggers, and says which Secret is missing once the file is gone.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use floodgate_crds::{
    redis_conn::RedisMode,
    v1alpha1::{PrometheusAuthRef, RedisAuthRef},
};
use floodgate_operator::{
    observe::{
        credentials::{self, Clients, Found, SecretData},
        depth::AppMetricsDepth,
        prometheus::{PromClient, trigger},
        streams::{Backlog, backlog},
        triggers::{self, Source, Trigger},
    },
    reconcile::Context,
    store::{RedisAddress, RedisTarget},
    telemetry::Metrics,
};

use crate::support;

mod campaign;
mod promql;
mod servers;
mod stream_backlogs;

use servers::*;
use support::{Server, free_port};
