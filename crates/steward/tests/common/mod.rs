//! Runs the real `steward` binary for end-to-end tests, and talks to it over HTTP.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub fn steward(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.args(args).env("STEWARD_LOG", "warn");
    // The tests pick their own storage; the caller's environment must not redirect them.
    for (k, _) in std::env::vars() {
        if k.starts_with("STEWARD_") && k != "STEWARD_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `steward demo --no-serve` into `data_dir`: a simulated company of `accounts` over
/// `days`, from `seed`. Returns what it printed.
pub fn demo(data_dir: &Path, accounts: u32, days: u32, seed: u64) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let (accounts, days, seed) = (accounts.to_string(), days.to_string(), seed.to_string());
    let data = data_dir.to_str().unwrap();
    let args = ["demo", "--no-serve", "--accounts", &accounts, "--days", &days, "--seed", &seed];
    let out = steward(&args).args(["--listen", &listen, "--data-dir", data]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// What `out` prints after `label` on the line that starts with it.
pub fn printed<'a>(out: &'a str, label: &str) -> &'a str {
    let line = out.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label} in {out}"));
    line.trim_start()[label.len()..].trim()
}

pub struct Workspace {
    pub id: String,
    pub write_key: String,
    pub admin_key: String,
}

pub fn create_workspace(data_dir: &Path, name: &str) -> Workspace {
    let out = steward(&["workspace", "create", name, "--data-dir", data_dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "workspace create failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    Workspace {
        id: v["workspace_id"].as_str().unwrap().into(),
        write_key: v["write_key"].as_str().unwrap().into(),
        admin_key: v["admin_key"].as_str().unwrap().into(),
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts `steward serve` on a free port and waits until it is ready.
    pub async fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[]).await
    }

    /// [`Server::start`] with configuration from the environment (`STEWARD_EMAIL__HOST`...).
    pub async fn start_with(data_dir: &Path, env: &[(&str, String)]) -> Server {
        let port = free_port();
        let mut cmd =
            steward(&["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data_dir.to_str().unwrap()]);
        cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = cmd.stdout(Stdio::null()).spawn().unwrap();
        let server = Server { child, base: format!("http://127.0.0.1:{port}"), data_dir: data_dir.to_path_buf() };
        let http = Http::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(&format!("{}/readyz", server.base), None).await.map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new() -> Http {
        Http { client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()) }
    }

    pub async fn get(&self, url: &str, bearer: Option<&str>) -> Option<(u16, Value)> {
        let mut req = hyper::Request::get(url);
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let resp = self.client.request(req.body(Full::new(Bytes::new())).unwrap()).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// A request with a secret key as the bearer and a JSON body. None when the connection fails.
    pub async fn send(&self, method: &str, url: &str, bearer: &str, body: Value) -> Option<(u16, Value)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {bearer}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = self.client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Posts with the write key as the Basic username. None when the connection fails.
    pub async fn post(&self, url: &str, write_key: &str, body: String) -> Option<(u16, Value)> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Every event of the workspace: message id -> (times seen, account ids of the last).
    pub async fn all_events(&self, base: &str, admin: &str) -> std::collections::HashMap<String, (usize, Vec<String>)> {
        let mut out = std::collections::HashMap::new();
        let mut cursor = String::new();
        loop {
            let url = format!("{base}/api/v1/events?limit=1000&cursor={cursor}");
            let (status, page) = self.get(&url, Some(admin)).await.expect("the API answers");
            assert_eq!(status, 200, "{page}");
            for e in page["data"].as_array().unwrap() {
                let accounts =
                    e["account_ids"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
                let entry = out.entry(e["message_id"].as_str().unwrap().to_owned()).or_insert((0, Vec::new()));
                entry.0 += 1;
                entry.1 = accounts;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => return out,
            }
        }
    }
}

/// The repository's root, where the test scripts installed the SDKs.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}
