//! The dashboard in a real headless browser (Debian's Chromium driven by playwright-core):
//! `steward demo` prints a sign-in that works, and every page shows the store's numbers:
//! trends of the days the demo scored before today, an account's health history, the
//! rule-based prior's reasons, a recommended action with its evidence made a task; and
//! every page fits a window 400 pixels wide. Screenshots land in
//! `target/dashboard-screenshots/`.

mod common;

use std::path::PathBuf;

use common::{Server, demo, printed};

#[tokio::test]
async fn an_operator_signs_in_and_works_through_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = demo(dir.path(), 40, 90, 11);
    let admin = printed(&stdout, "admin key:").to_owned();
    // "dashboard:     http://.../login   email E   password P"
    let sign_in: Vec<&str> = printed(&stdout, "dashboard:").split_whitespace().collect();
    assert_eq!((sign_in[1], sign_in[3]), ("email", "password"), "{stdout}");
    let (email, password) = (sign_in[2].to_owned(), sign_in[4].to_owned());

    let server = Server::start(dir.path()).await;
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = manifest.join("../../target/dashboard-screenshots");
    let script = manifest.join("tests/sdk/dashboard.mjs");
    let base = server.base.clone();
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script)
            .args([&base, &email, &password, &admin, shots.to_str().unwrap()])
            .current_dir(script.parent().unwrap())
            .output()
            .expect("node runs (scripts/test installs playwright-core and Chromium)")
    })
    .await
    .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{log}");
    assert!(log.contains("dashboard: all checks passed"), "{log}");
}
