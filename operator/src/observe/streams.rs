//! A `scaling.triggers[].redisStream` backlog (KEDA's redis-streams scaler): the consumer
//! group's pending entries (`XPENDING` summary: delivered, not acknowledged) or its lag
//! (`XINFO GROUPS` `lag`, Redis 7: entries not yet delivered). Both name one key, so a Redis
//! Cluster connection sends them to the stream's node.

use floodgate_crds::redis_conn::RedisConn;
use redis::Value;

/// What a stream trigger counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backlog {
    Pending,
    Lag,
}

/// The backlog of `group` on `stream`, or why it cannot be read.
pub async fn backlog(
    conn: &RedisConn,
    stream: &str,
    group: &str,
    kind: Backlog,
) -> Result<u64, String> {
    let mut conn = conn.clone();
    match kind {
        Backlog::Pending => {
            let reply: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .query_async(&mut conn)
                .await
                .map_err(|e| describe(&e, stream, group))?;
            match reply {
                Value::Array(items) => match items.first() {
                    Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                    _ => Err(format!(
                        "XPENDING {stream} {group}: unexpected reply {items:?}"
                    )),
                },
                other => Err(format!(
                    "XPENDING {stream} {group}: unexpected reply {other:?}"
                )),
            }
        }
        Backlog::Lag => {
            let groups: Vec<Value> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut conn)
                .await
                .map_err(|e| describe(&e, stream, group))?;
            lag_of(&groups, stream, group)
        }
    }
}

/// Redis's own words, with the stream and group named (never a credential: the URL is not
/// part of the message).
fn describe(e: &redis::RedisError, stream: &str, group: &str) -> String {
    let text = e.to_string();
    if text.contains("NOGROUP") || text.contains("no such key") {
        format!("stream {stream} or its consumer group {group} does not exist ({text})")
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed
        || ["NOAUTH", "WRONGPASS", "NOPERM"]
            .iter()
            .any(|code| text.contains(code))
    {
        format!("Redis refused the credentials for stream {stream} ({text})")
    } else {
        format!("reading stream {stream} group {group}: {text}")
    }
}

/// A field of one `XINFO GROUPS` entry (a RESP2 flat list or a RESP3 map).
fn field<'a>(entry: &'a Value, name: &str) -> Option<&'a Value> {
    let is = |k: &Value| {
        matches!(k, Value::BulkString(b) if b == name.as_bytes())
            || matches!(k, Value::SimpleString(s) if s == name)
    };
    match entry {
        Value::Array(kv) => kv.chunks(2).find(|p| is(&p[0])).and_then(|p| p.get(1)),
        Value::Map(kv) => kv.iter().find(|(k, _)| is(k)).map(|(_, v)| v),
        _ => None,
    }
}

fn lag_of(groups: &[Value], stream: &str, group: &str) -> Result<u64, String> {
    let entry = groups
        .iter()
        .find(|g| matches!(field(g, "name"), Some(Value::BulkString(b)) if b == group.as_bytes()))
        .ok_or_else(|| format!("stream {stream} has no consumer group {group}"))?;
    match field(entry, "lag") {
        Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
        Some(Value::Nil) => Err(format!(
            "Redis cannot tell the lag of group {group} on stream {stream} (entries were deleted \
             or trimmed past its position); use pendingEntriesCount or let it catch up"
        )),
        None => Err(format!(
            "XINFO GROUPS {stream} has no lag field: Redis 7 or newer is needed for lagCount"
        )),
        Some(other) => Err(format!("unexpected lag {other:?} for group {group}")),
    }
}
