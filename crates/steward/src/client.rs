//! A small HTTP/1.1 client for the demo, the playbooks' installer and the benchmarks, with
//! connection reuse.

use anyhow::{Context, Result};
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
    authorization: String,
}

impl Client {
    /// A client that sends `write_key` as the HTTP Basic username, as the Segment SDKs do.
    pub fn with_write_key(base: &str, write_key: &str) -> Client {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            authorization: format!("Basic {token}"),
        }
    }

    /// A client that sends `key` as a bearer token, as the API's clients do.
    pub fn with_api_key(base: &str, key: &str) -> Client {
        let mut c = Client::with_write_key(base, "");
        c.authorization = format!("Bearer {key}");
        c
    }

    /// Sends a request with a JSON body, or none.
    pub async fn request(&self, method: hyper::Method, path: &str, body: Option<Bytes>) -> Result<(u16, Bytes)> {
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("authorization", &self.authorization)
            .body(Full::new(body.unwrap_or_default()))?;
        let resp = self.inner.request(req).await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn post(&self, path: &str, body: Bytes) -> Result<(u16, Bytes)> {
        let req = hyper::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("authorization", &self.authorization)
            .body(Full::new(body))?;
        let resp = self.inner.request(req).await.with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
