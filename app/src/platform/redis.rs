//! The process's one multiplexed Redis connection and its key prefix.
//!
//! Every key is `<prefix><rest>`; callers put the entity in a hash tag (`{q:concert-42}`) so
//! the keys one Lua script touches share a cluster slot.

use std::{sync::Arc, time::Duration};

use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::batch::Batcher;
use crate::config::Settings;

#[derive(Clone)]
pub struct Redis {
    client: Client,
    conn: ConnectionManager,
    batch: Arc<Batcher>,
    prefix: Arc<str>,
}

impl Redis {
    /// Connects lazily and reconnects by itself, so the app starts (not ready) while Redis is
    /// down and recovers when it returns.
    pub fn connect(settings: &Settings) -> redis::RedisResult<Self> {
        let client = super::tls::redis_client(settings)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            batch: Arc::new(Batcher::new(conn.clone())),
            conn,
            prefix: settings.redis_prefix.as_str().into(),
        })
    }

    /// A handle on the shared multiplexed connection (cheap to clone).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The same connection, with concurrent single commands coalesced into pipelines (see
    /// [`super::batch`]): for hot commands issued by many requests at once.
    pub fn batch(&self) -> &Batcher {
        &self.batch
    }

    /// The client, for the few things that need their own connection (pub/sub).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// PING with a short deadline, for readiness.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        matches!(
            tokio::time::timeout(
                Duration::from_secs(1),
                redis::cmd("PING").query_async::<String>(&mut conn)
            )
            .await,
            Ok(Ok(_))
        )
    }
}
