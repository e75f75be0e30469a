//! What tests share: finding the project's Python, and running the receivers written in it
//! (`scripts/`): an SMTP server that records what it accepts (aiosmtpd), an HTTPS webhook
//! receiver that checks signatures with the reference Standard Webhooks library.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python to run the receivers with: `STEWARD_TEST_PYTHON` (scripts/test sets it to the
/// project's .venv, where the modules must be: missing ones fail the test), else `python3`
/// if it has them. `None` (after a loud message) only when neither is usable.
pub fn python(modules: &[&str], test: &str) -> Option<PathBuf> {
    let imports = format!("import {}", modules.join(", "));
    let works = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", &imports])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match std::env::var_os("STEWARD_TEST_PYTHON") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                works(&path),
                "STEWARD_TEST_PYTHON={} cannot `{imports}`: run scripts/test to install them",
                path.display()
            );
            Some(path)
        }
        None => {
            let path = PathBuf::from("python3");
            if works(&path) {
                return Some(path);
            }
            // Straight to the process's stderr: the test harness captures `eprintln!`, and a
            // skipped test must not pass quietly.
            let message = format!(
                "\n!!!!! SKIPPED {test}: STEWARD_TEST_PYTHON is unset and python3 cannot `{imports}`.\n\
                 !!!!! Run scripts/test (it installs them into .venv) to run this test.\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            None
        }
    }
}

/// The path of one of the receivers in `scripts/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// A receiver process, killed when dropped, with the port it printed.
pub struct Receiver {
    _child: Child,
    pub port: u16,
}

/// Starts `python script args...` and waits for its `{"port": N}` line.
pub async fn start(python: &Path, script: &Path, args: &[String]) -> Receiver {
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let mut stdout = BufReader::new(stdout);
    let read = stdout.read_line(&mut line);
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("{} did not say its port within a minute", script.display()))
        .expect("reading the receiver's port");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{} printed {line:?}: {e}", script.display()));
    let port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port");
    Receiver { _child: child, port }
}

/// The JSON lines a receiver recorded.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}
