//! Reads a Campaign's `scaling.triggers` (KEDA's prometheus and redis-streams scalers), all at
//! once. The clients arrive resolved (credentials from Secrets: `reconcile::signals`); one that
//! could not be built carries its reason, so the trigger is unavailable with that message.

use floodgate_crds::redis_conn::RedisConn;
use futures::future::join_all;

use super::{
    prometheus::{PromClient, trigger},
    streams::{self, Backlog},
};
use crate::scaling::triggers::{TriggerName, TriggerReading, TriggerReadings};

/// Where a trigger's value comes from.
pub enum Source {
    Prometheus {
        url: String,
        query: String,
        client: Box<Result<PromClient, String>>,
    },
    Stream {
        conn: Result<RedisConn, String>,
        stream: String,
        group: String,
        backlog: Backlog,
    },
}

pub struct Trigger {
    pub name: String,
    pub source: Source,
    /// Target value per replica.
    pub target: f64,
    pub activation: Option<f64>,
}

async fn value(source: &Source) -> Result<f64, String> {
    match source {
        Source::Prometheus { url, query, client } => {
            let client = client.as_ref().as_ref().map_err(Clone::clone)?;
            trigger::value(client, url, query).await
        }
        Source::Stream {
            conn,
            stream,
            group,
            backlog,
        } => {
            let conn = conn.as_ref().map_err(Clone::clone)?;
            streams::backlog(conn, stream, group, *backlog)
                .await
                .map(|n| n as f64)
        }
    }
}

/// Every trigger's reading (in spec order) and, for each one that failed, why.
pub async fn read(triggers: &[Trigger]) -> (TriggerReadings, Vec<String>) {
    let values = join_all(triggers.iter().map(|t| value(&t.source))).await;
    let mut readings = TriggerReadings::default();
    let mut problems = Vec::new();
    for (t, v) in triggers.iter().zip(values) {
        let value = v
            .map_err(|why| problems.push(format!("trigger {}: {why}", t.name)))
            .ok();
        let reading = TriggerReading {
            name: TriggerName::new(&t.name),
            value,
            target: t.target,
            activation: t.activation,
        };
        if !readings.push(reading) {
            problems.push(format!("trigger {}: more than 8 triggers", t.name));
        }
    }
    (readings, problems)
}
