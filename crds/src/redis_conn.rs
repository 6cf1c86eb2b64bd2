//! The one Redis connection type of the app and the operator: a single node or a Redis
//! Cluster, chosen by configuration, behind redis-rs's `aio::ConnectionLike` so call sites
//! do not care which.
//!
//! - `single`: one URL, one multiplexed `ConnectionManager` that reconnects by itself.
//! - `cluster`: a comma-separated list of seed node URLs (any one that answers is enough;
//!   list several so a dead seed does not stop a start), one `cluster_async` connection that
//!   follows the slot map, MOVED/ASK redirections and failovers.
//!
//! TLS: `rediss://` URLs go through rustls (ring provider), verified against the system's
//! roots or the CA bundle of [`RedisTls`], with its client certificate if any; the same
//! certificates serve every node of a cluster.
//!
//! In a cluster every command and script must keep its keys in one slot (the project's keys
//! share a `{hash tag}` per entity). [`check_one_slot`] verifies that for every script call
//! and transaction; debug builds (every test) run it on single nodes too, so a new script
//! whose keys would be refused with CROSSSLOT by a cluster fails the single-node suites.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use redis::{
    Client, ClientTlsConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, TlsCertificates, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

/// How the configured Redis is deployed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisMode {
    #[default]
    Single,
    Cluster,
}

impl std::str::FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Self::Single),
            "cluster" => Ok(Self::Cluster),
            other => Err(format!(
                "redis mode must be `single` or `cluster`, not `{other}`"
            )),
        }
    }
}

impl std::fmt::Display for RedisMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
        })
    }
}

/// Client-side deadlines of the connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// The node URLs of `urls`: one for a single node, the comma-separated seeds of a cluster.
pub fn node_urls(mode: RedisMode, urls: &str) -> RedisResult<Vec<String>> {
    let list: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    match (mode, list.len()) {
        (_, 0) => Err(invalid("the Redis URL is empty")),
        (RedisMode::Single, 1) | (RedisMode::Cluster, _) => Ok(list),
        (RedisMode::Single, _) => Err(invalid(
            "a list of Redis URLs needs the cluster mode (FLOODGATE_REDIS_MODE=cluster)",
        )),
    }
}

fn invalid(msg: &'static str) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, msg))
}

/// TLS files for `rediss://` URLs, all PEM (the app's and the operator's
/// FLOODGATE_REDIS_CA_FILE, FLOODGATE_REDIS_CLIENT_CERT_FILE, FLOODGATE_REDIS_CLIENT_KEY_FILE).
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    /// CAs to trust instead of the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A client certificate for a Redis with `tls-auth-clients`, with its key.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl RedisTls {
    /// The certificates to apply, `None` when no file is set (a `rediss://` URL is then
    /// verified against the system's roots).
    pub fn certificates(&self) -> RedisResult<Option<TlsCertificates>> {
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read_pem(cert)?,
                client_key: read_pem(key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "a Redis client certificate needs both its file and its key",
                ));
            }
        };
        let root_cert = self.ca_file.as_deref().map(read_pem).transpose()?;
        if root_cert.is_none() && client_tls.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// The client of one node URL, with the certificates applied.
    pub fn client(&self, url: &str) -> RedisResult<Client> {
        client_with(url, self.certificates()?)
    }

    /// The certificates with `ca_pem` (PEM) trusted instead of the CA file: a Campaign's own
    /// CA from a Secret, kept in memory (the operator's root filesystem is read-only).
    pub fn certificates_with_ca(
        &self,
        ca_pem: Option<&[u8]>,
    ) -> RedisResult<Option<TlsCertificates>> {
        let Some(pem) = ca_pem else {
            return self.certificates();
        };
        if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(invalid("the Redis CA is not PEM"));
        }
        let client_tls = self.certificates()?.and_then(|c| c.client_tls);
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert: Some(pem.to_vec()),
        }))
    }
}

fn client_with(url: &str, certs: Option<TlsCertificates>) -> RedisResult<Client> {
    match certs {
        Some(_) if !url.starts_with("rediss") => Err(invalid(
            "Redis TLS files are set but the URL is not rediss://",
        )),
        Some(certs) => Client::build_with_tls(url, certs),
        None => Client::open(url),
    }
}

fn read_pem(path: &Path) -> RedisResult<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read a Redis TLS file",
            format!("{}: {e}", path.display()),
        ))
    })?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "a Redis TLS file is not PEM",
            path.display().to_string(),
        )));
    }
    Ok(bytes)
}

/// A handle on the shared multiplexed connection (cheap to clone).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects in the background (a start while Redis is down succeeds; commands fail until
    /// it answers). Needs a tokio runtime.
    pub fn connect_lazy(
        mode: RedisMode,
        urls: &str,
        t: Timeouts,
        tls: &RedisTls,
    ) -> RedisResult<Self> {
        Self::connect_lazy_with(mode, urls, t, tls.certificates()?)
    }

    /// [`Self::connect_lazy`] with certificates already in memory (see
    /// [`RedisTls::certificates_with_ca`]).
    pub fn connect_lazy_with(
        mode: RedisMode,
        urls: &str,
        t: Timeouts,
        certs: Option<TlsCertificates>,
    ) -> RedisResult<Self> {
        let urls = node_urls(mode, urls)?;
        match mode {
            RedisMode::Single => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t.connect))
                    .set_response_timeout(Some(t.response))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let client = client_with(&urls[0], certs)?;
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            RedisMode::Cluster => {
                let client = cluster_client(&urls, certs)?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(t.connect)
                    .set_response_timeout(t.response);
                Ok(Self::Cluster(
                    client.get_pending_async_connection_with_config(config),
                ))
            }
        }
    }

    /// Connects now, failing when Redis does not answer.
    pub async fn connect(
        mode: RedisMode,
        urls: &str,
        t: Timeouts,
        tls: &RedisTls,
    ) -> RedisResult<Self> {
        let mut conn = Self::connect_lazy(mode, urls, t, tls)?;
        conn.ping().await?;
        Ok(conn)
    }

    /// PING the node (single) or one primary (cluster: a node that is down and already
    /// replaced by its replica does not make the whole cluster look unreachable).
    pub async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Self::Single(c) => ping.query_async::<String>(c).await.map(drop),
            Self::Cluster(c) => c
                .route_command(
                    ping,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
                )
                .await
                .map(drop),
        }
    }

    /// Whether calls are checked for keys in one slot: always on a cluster (a clear error
    /// before the server's CROSSSLOT), and in debug builds on a single node too, so every
    /// test catches a script that a cluster would refuse.
    fn checks(&self) -> bool {
        cfg!(debug_assertions) || matches!(self, Self::Cluster(_))
    }

    pub fn mode(&self) -> RedisMode {
        match self {
            Self::Single(_) => RedisMode::Single,
            Self::Cluster(_) => RedisMode::Cluster,
        }
    }
}

/// Retries (with slot-map refreshes) ride out a failover: a promoted replica takes a few
/// seconds; callers' own deadlines bound the wait.
fn cluster_client(urls: &[String], certs: Option<TlsCertificates>) -> RedisResult<ClusterClient> {
    let builder = ClusterClient::builder(urls.iter().map(String::as_str))
        .retries(8)
        .min_retry_wait(20)
        .max_retry_wait(500);
    match certs {
        Some(_) if urls.iter().any(|u| !u.starts_with("rediss")) => Err(invalid(
            "Redis TLS files are set but a cluster seed URL is not rediss://",
        )),
        Some(certs) => builder.certs(certs).build(),
        None => builder.build(),
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        if self.checks()
            && let Err(e) = check_one_slot(cmd)
        {
            return Box::pin(async move { Err(e) });
        }
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if self.checks()
            && let Err(e) = check_pipeline(pipeline)
        {
            return Box::pin(async move { Err(e) });
        }
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            // (the slots of every command are only worked out where they matter)
            Self::Cluster(c) if !pipeline.is_transaction() && spans_slots(pipeline) => {
                Box::pin(split_by_command(c.clone(), pipeline, offset, count))
            }
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Each command in one slot; a transaction (MULTI/EXEC) all in one slot.
fn check_pipeline(pipeline: &Pipeline) -> RedisResult<()> {
    pipeline.cmd_iter().try_for_each(check_one_slot)?;
    if pipeline.is_transaction() {
        same_slot(pipeline.cmd_iter().filter_map(cmd_slot))?;
    }
    Ok(())
}

fn spans_slots(pipeline: &Pipeline) -> bool {
    same_slot(pipeline.cmd_iter().filter_map(cmd_slot)).is_err()
}

/// A plain pipeline over several slots (one order's goods, say) cannot go to one node:
/// its commands are sent one by one, side by side, each to its slot's node, and the replies
/// are put back in order (the first error fails the whole, as a pipeline read does).
async fn split_by_command(
    conn: ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    let sends = pipeline.cmd_iter().map(|cmd| {
        let mut conn = conn.clone();
        async move { conn.req_packed_command(cmd).await }
    });
    let replies = futures::future::try_join_all(sends).await?;
    Ok(replies.into_iter().skip(offset).take(count).collect())
}

/// The cluster slot of `key` (CRC16 of its hash tag, or of the whole key without one).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16_384
}

/// Refuses a script call (`EVAL`, `EVALSHA`, `FCALL` and their `_RO` forms) or a multi-key
/// command whose keys are not all in one slot: a cluster would answer CROSSSLOT.
pub fn check_one_slot(cmd: &Cmd) -> RedisResult<()> {
    same_slot(keys_of(cmd).into_iter().map(key_slot)).map_err(|e| {
        let name = cmd_name(cmd);
        RedisError::from((
            ServerErrorKind::CrossSlot.into(),
            "keys of one command or script in different cluster slots",
            format!("{name}: {e}"),
        ))
    })
}

fn same_slot(mut slots: impl Iterator<Item = u16>) -> RedisResult<()> {
    let Some(first) = slots.next() else {
        return Ok(());
    };
    match slots.find(|&s| s != first) {
        None => Ok(()),
        Some(other) => Err(RedisError::from((
            ServerErrorKind::CrossSlot.into(),
            "keys in different cluster slots",
            format!("slots {first} and {other}"),
        ))),
    }
}

fn args(cmd: &Cmd) -> Vec<&[u8]> {
    cmd.args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn cmd_name(cmd: &Cmd) -> String {
    args(cmd)
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default()
}

/// The slot a cluster routes `cmd` to (its first key's), `None` for a command without keys.
pub fn cmd_slot(cmd: &Cmd) -> Option<u16> {
    keys_of(cmd).first().copied().map(key_slot)
}

/// The keys of the commands this project sends with keys: script calls name theirs after
/// the key count; the multi-key commands list theirs.
fn keys_of(cmd: &Cmd) -> Vec<&[u8]> {
    let a = args(cmd);
    let name = cmd_name(cmd);
    match name.as_str() {
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            let n = a
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            a.iter().skip(3).take(n).copied().collect()
        }
        // (MGET, MSET, DEL, UNLINK, EXISTS and TOUCH are split per slot by the cluster
        // client, so they count by their first key like the single-key commands)
        "SUNION" | "SINTER" | "SDIFF" | "SUNIONSTORE" | "SINTERSTORE" | "SDIFFSTORE" | "RENAME"
        | "RENAMENX" | "SMOVE" | "RPOPLPUSH" | "LMOVE" | "ZUNIONSTORE" | "ZINTERSTORE"
        | "PFCOUNT" | "PFMERGE" | "MSETNX" => {
            let step = if name == "MSETNX" { 2 } else { 1 };
            a.iter().skip(1).step_by(step).copied().collect()
        }
        "MULTI" | "EXEC" | "DISCARD" | "PING" | "PUBLISH" => Vec::new(),
        _ => a.get(1).copied().into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // values from `CLUSTER KEYSLOT` on Redis 7
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"fg:{q:e2e}:line"), key_slot(b"q:e2e"));
        // the same slots redis-rs's cluster routing computes
        for key in [
            "fg:{cp:7}:meta",
            "a{b}c",
            "{x",
            "}{y}",
            "plain",
            "fgt:1:{c:goods:42}:gen",
        ] {
            let ours = redis::cluster_routing::Slot::new(key_slot(key.as_bytes()));
            assert_eq!(
                ours,
                Some(redis::cluster_routing::Slot::for_key(key)),
                "{key}"
            );
        }
        // an empty tag does not count: the whole key is hashed
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn a_script_with_keys_in_two_slots_is_refused() {
        let mut ok = redis::cmd("EVALSHA");
        ok.arg("abc").arg(2).arg("p:{a}:x").arg("p:{a}:y").arg("zz");
        assert!(check_one_slot(&ok).is_ok());
        let mut bad = redis::cmd("EVALSHA");
        bad.arg("abc").arg(2).arg("p:{a}:x").arg("p:{b}:y");
        let e = check_one_slot(&bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server(ServerErrorKind::CrossSlot));
        assert!(e.to_string().contains("EVALSHA"), "{e}");
        let mut store = redis::cmd("SUNIONSTORE");
        store.arg("{a}1").arg("{b}2");
        assert!(check_one_slot(&store).is_err());
        // split per slot by the cluster client
        let mut del = redis::cmd("DEL");
        del.arg("{a}1").arg("{b}2");
        assert!(check_one_slot(&del).is_ok());
    }

    #[test]
    fn node_lists_need_the_cluster_mode() {
        assert_eq!(
            node_urls(RedisMode::Cluster, "redis://a:1, redis://b:2").unwrap(),
            ["redis://a:1", "redis://b:2"]
        );
        assert!(node_urls(RedisMode::Single, "redis://a:1,redis://b:2").is_err());
        assert!(node_urls(RedisMode::Cluster, " ").is_err());
        assert_eq!("cluster".parse::<RedisMode>(), Ok(RedisMode::Cluster));
        assert!("Cluster".parse::<RedisMode>().is_err());
    }
}
