//! The HTTP client for the Prometheus API: `http://`, or `https://` verified by rustls (ring
//! provider) against FLOODGATE_PROMETHEUS_CA_FILE's bundle, else the system's roots; the
//! certificate must name the URL's host. Not reqwest: its rustls backend wants aws-lc-rs or a
//! process-wide provider, which every other reqwest client in the workspace would then need.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct PromClient {
    http: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    /// Sent with every request (a Campaign's bearer token or basic auth), marked sensitive.
    authorization: Option<hyper::header::HeaderValue>,
    /// Why this Campaign's Prometheus must not be asked (its Secret is missing): every
    /// request fails with it, so each Prometheus signal is unavailable with that reason.
    refusal: Option<Arc<str>>,
}

impl Default for PromClient {
    /// The system's roots.
    fn default() -> Self {
        Self::with_roots(system_roots())
    }
}

impl PromClient {
    /// Trusting only the CAs in `ca_file` (PEM) when given, else the system's roots.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match ca_file {
            Some(path) => Self::with_roots(roots_from(path)?),
            None => Self::default(),
        })
    }

    /// Trusting only the CAs in `pem` (a Campaign's CA from a Secret).
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("the CA is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the CA is not usable: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the CA holds no certificate".into());
        }
        Ok(Self::with_roots(roots))
    }

    fn with_roots(roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout: Duration::from_secs(3),
            authorization: None,
            refusal: None,
        }
    }

    /// The same connection pool, sending `value` as the `Authorization` header.
    pub fn with_authorization(&self, value: &str) -> Result<Self, String> {
        let mut value = hyper::header::HeaderValue::from_str(value)
            .map_err(|_| "the credentials hold characters not allowed in an HTTP header")?;
        value.set_sensitive(true);
        Ok(Self {
            authorization: Some(value),
            ..self.clone()
        })
    }

    /// A client that asks nothing and fails every request with `why`.
    pub fn refusing(&self, why: &str) -> Self {
        Self {
            refusal: Some(why.into()),
            ..self.clone()
        }
    }

    pub fn sends_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    /// GET `url`; the body whatever the status (Prometheus explains errors in JSON), or why
    /// there is none (the TLS error included).
    pub async fn get(&self, url: &str) -> Result<Bytes, String> {
        self.fetch(url).await.map(|(_, body)| body)
    }

    /// GET `url` (with the client's credentials); the status and the body.
    pub async fn fetch(&self, url: &str) -> Result<(u16, Bytes), String> {
        if let Some(why) = &self.refusal {
            return Err(why.to_string());
        }
        let mut req = hyper::Request::get(url);
        if let Some(value) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, value.clone());
        }
        let req = req.body(Empty::new()).map_err(|e| format!("{url}: {e}"))?;
        let call = async {
            let resp = self.http.request(req).await.map_err(|e| chain(&e))?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| chain(&e))?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }
}

/// An error with its causes ("client error (Connect): invalid peer certificate: ...").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn roots_from(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("reading the Prometheus CA file {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        roots.add(cert)?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "the Prometheus CA file {} holds no certificate",
        path.display()
    );
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's CA certificates");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}
