//! Credentials a Campaign takes from a Secret in its namespace (KEDA's TriggerAuthentication,
//! simplified): the keys are looked up here, and the clients built from them are cached by a
//! hash of what they hold, so a resync reuses the connection and a rotated Secret gets a new
//! one. Messages name the Secret and the key, never a value.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use base64::Engine;
use floodgate_crds::{
    redis_conn::{RedisConn, Timeouts},
    v1alpha1::{PrometheusAuthRef, RedisAuthRef},
};
use sha2::{Digest, Sha256};

use super::prometheus::PromClient;
use crate::store::RedisAddress;

/// A Secret's `data`, decoded.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// One Secret as found: `None` when it does not exist.
pub struct Found<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub data: Option<&'a SecretData>,
}

impl Found<'_> {
    fn bytes(&self, key: &str) -> Result<&[u8], String> {
        let (ns, name) = (self.namespace, self.name);
        let data = self
            .data
            .ok_or_else(|| format!("Secret {ns}/{name} not found"))?;
        data.get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("Secret {ns}/{name} has no key {key:?}"))
    }

    /// A text value; one trailing newline (`kubectl create secret --from-file`) is dropped.
    fn text(&self, key: &str) -> Result<String, String> {
        let bytes = self.bytes(key)?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            format!(
                "key {key:?} of Secret {}/{} is not UTF-8 text",
                self.namespace, self.name
            )
        })?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
    }

    fn opt_text(&self, key: Option<&String>) -> Result<Option<String>, String> {
        key.map(|k| self.text(k)).transpose()
    }

    fn opt_bytes(&self, key: Option<&String>) -> Result<Option<Vec<u8>>, String> {
        key.map(|k| self.bytes(k).map(<[u8]>::to_vec)).transpose()
    }
}

/// What a Prometheus authRef yields.
#[derive(Clone, Default, PartialEq)]
pub struct PromCreds {
    /// The `Authorization` header value.
    pub authorization: Option<String>,
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for PromCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromCreds")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

pub fn prometheus(r: &PrometheusAuthRef, secret: &Found<'_>) -> Result<PromCreds, String> {
    if secret.data.is_none() {
        return Err(format!(
            "Secret {}/{} not found",
            secret.namespace, secret.name
        ));
    }
    let authorization = match (&r.bearer_token_key, &r.username_key, &r.password_key) {
        (Some(token), _, _) => Some(format!("Bearer {}", secret.text(token)?)),
        (None, Some(user), Some(pass)) => {
            let pair = format!("{}:{}", secret.text(user)?, secret.text(pass)?);
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Some(format!("Basic {encoded}"))
        }
        _ => None,
    };
    Ok(PromCreds {
        authorization,
        ca: secret.opt_bytes(r.ca_key.as_ref())?,
    })
}

/// What a Redis authRef yields.
#[derive(Clone, Default, PartialEq)]
pub struct RedisCreds {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCreds")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

pub fn redis(r: &RedisAuthRef, secret: &Found<'_>) -> Result<RedisCreds, String> {
    if secret.data.is_none() {
        return Err(format!(
            "Secret {}/{} not found",
            secret.namespace, secret.name
        ));
    }
    Ok(RedisCreds {
        username: secret.opt_text(r.username_key.as_ref())?,
        password: secret.opt_text(r.password_key.as_ref())?,
        ca: secret.opt_bytes(r.ca_key.as_ref())?,
    })
}

/// Each node URL of `urls` (comma-separated for a cluster) with the user and password set
/// (percent-encoded).
pub fn with_userinfo(urls: &str, creds: &RedisCreds) -> Result<String, String> {
    let one = |u: &str| -> Result<String, String> {
        let mut url = reqwest::Url::parse(u.trim())
            .map_err(|e| format!("the operator's Redis URL is not a URL: {e}"))?;
        let bad = |_| "the operator's Redis URL cannot carry credentials".to_owned();
        url.set_username(creds.username.as_deref().unwrap_or(""))
            .map_err(bad)?;
        url.set_password(creds.password.as_deref()).map_err(bad)?;
        Ok(url.to_string())
    };
    let all: Result<Vec<_>, _> = urls
        .split(',')
        .filter(|u| !u.trim().is_empty())
        .map(one)
        .collect();
    Ok(all?.join(","))
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Clients built from Secret-held credentials, reused across resyncs.
#[derive(Default)]
pub struct Clients {
    prometheus: Mutex<HashMap<[u8; 32], PromClient>>,
    redis: Mutex<HashMap<[u8; 32], RedisConn>>,
}

/// Old entries (rotated Secrets) are dropped wholesale past this many.
const CACHE_MAX: usize = 64;

impl Clients {
    /// `base` (the operator's CA) or a client trusting `creds.ca`, sending `creds`'s header.
    pub fn prometheus(&self, base: &PromClient, creds: &PromCreds) -> Result<PromClient, String> {
        let client = match &creds.ca {
            None => base.clone(),
            Some(pem) => {
                let key = fingerprint(&[pem]);
                let mut cache = self.prometheus.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > CACHE_MAX {
                    cache.clear();
                }
                match cache.get(&key) {
                    Some(c) => c.clone(),
                    None => {
                        let c = PromClient::from_ca_pem(pem)
                            .map_err(|e| format!("the Prometheus CA from the Secret: {e}"))?;
                        cache.insert(key, c.clone());
                        c
                    }
                }
            }
        };
        match &creds.authorization {
            Some(value) => client.with_authorization(value),
            None => Ok(client),
        }
    }

    /// A connection to the operator's Redis with `creds` (connected lazily: a refused password
    /// shows on the first read, with Redis's reason).
    pub fn redis(&self, addr: &RedisAddress, creds: &RedisCreds) -> Result<RedisConn, String> {
        let user = creds.username.as_deref().unwrap_or("").as_bytes();
        let pass = creds.password.as_deref().unwrap_or("").as_bytes();
        let ca = creds.ca.as_deref().unwrap_or(b"");
        let key = fingerprint(&[addr.urls.as_bytes(), user, pass, ca]);
        let mut cache = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        if cache.len() > CACHE_MAX {
            cache.clear();
        }
        let urls = with_userinfo(&addr.urls, creds)?;
        let certs = addr
            .tls
            .certificates_with_ca(creds.ca.as_deref())
            .map_err(|e| format!("Redis TLS with the Secret's CA: {e}"))?;
        let timeouts = Timeouts {
            connect: std::time::Duration::from_secs(2),
            response: std::time::Duration::from_secs(5),
        };
        let conn = RedisConn::connect_lazy_with(addr.mode, &urls, timeouts, certs)
            .map_err(|e| format!("connecting to Redis with the Secret's credentials: {e}"))?;
        cache.insert(key, conn.clone());
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> SecretData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn auth(token: Option<&str>, user: Option<&str>) -> PrometheusAuthRef {
        PrometheusAuthRef {
            secret_name: "prom".into(),
            bearer_token_key: token.map(Into::into),
            username_key: user.map(Into::into),
            password_key: user.map(|_| "password".into()),
            ca_key: None,
        }
    }

    #[test]
    fn builds_the_header_and_names_what_is_missing_without_the_value() {
        let d = data(&[("token", "s3cret\n"), ("user", "ops"), ("password", "pw")]);
        let found = Found {
            namespace: "shop",
            name: "prom",
            data: Some(&d),
        };
        let bearer = prometheus(&auth(Some("token"), None), &found).expect("bearer");
        assert_eq!(bearer.authorization.as_deref(), Some("Bearer s3cret"));
        let basic = prometheus(&auth(None, Some("user")), &found).expect("basic");
        assert_eq!(basic.authorization.as_deref(), Some("Basic b3BzOnB3"));
        assert!(
            !format!("{basic:?}").contains("b3BzOnB3"),
            "Debug must redact"
        );

        let err = prometheus(&auth(Some("nope"), None), &found).expect_err("missing key");
        assert_eq!(err, r#"Secret shop/prom has no key "nope""#);
        let gone = Found {
            namespace: "shop",
            name: "prom",
            data: None,
        };
        let err = prometheus(&auth(Some("token"), None), &gone).expect_err("missing Secret");
        assert_eq!(err, "Secret shop/prom not found");
    }

    #[test]
    fn redis_urls_get_percent_encoded_credentials_on_every_node() {
        let creds = RedisCreds {
            username: Some("fg".into()),
            password: Some("p@ss:w/rd".into()),
            ca: None,
        };
        let urls = with_userinfo("redis://10.0.0.1:7000, redis://10.0.0.2:7001", &creds).unwrap();
        assert_eq!(
            urls,
            "redis://fg:p%40ss%3Aw%2Frd@10.0.0.1:7000,redis://fg:p%40ss%3Aw%2Frd@10.0.0.2:7001"
        );
        let pass_only = RedisCreds {
            username: None,
            password: Some("pw".into()),
            ca: None,
        };
        assert_eq!(
            with_userinfo("redis://h:1", &pass_only).unwrap(),
            "redis://:pw@h:1"
        );
    }
}
