//! Workspaces, keys and replays from the command line. These work while a server runs on the
//! same data: SQLite serializes the writers, PostgreSQL is made for it.

use anyhow::{Context, Result, bail};
use domain::{KeyRole, NewApiKey, WorkspaceId};
use serde_json::json;

use crate::cli::{KeysCommand, WorkspaceCommand};
use crate::config::Config;
use crate::run::Backend;

/// A workspace with its write key and admin key: what a new user needs to start.
pub struct NewWorkspace {
    pub workspace_id: WorkspaceId,
    pub write_key: String,
    pub admin_key: String,
}

pub async fn create_workspace(store: &dyn store::Store, name: &str) -> Result<NewWorkspace> {
    let ws = store.create_workspace(name).await?;
    let now = chrono::Utc::now();
    let write = NewApiKey::generate(&ws.workspace_id, KeyRole::Write, now);
    let admin = NewApiKey::generate(&ws.workspace_id, KeyRole::Admin, now);
    store.insert_key(&write.key).await?;
    store.insert_key(&admin.key).await?;
    Ok(NewWorkspace { workspace_id: ws.workspace_id, write_key: write.secret, admin_key: admin.secret })
}

pub(crate) async fn existing(store: &dyn store::Store, id: &str) -> Result<WorkspaceId> {
    let ws = WorkspaceId::parse(id).with_context(|| format!("{id:?} is not a workspace id"))?;
    if store.get_workspace(&ws).await?.is_none() {
        bail!("no workspace {id}");
    }
    Ok(ws)
}

pub async fn workspace(config: Config, command: WorkspaceCommand) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let out = match command {
        WorkspaceCommand::Create { name, .. } => {
            anyhow::ensure!(!name.trim().is_empty(), "the workspace name must not be empty");
            let ws = create_workspace(store.as_ref(), &name).await?;
            json!({"workspace_id": ws.workspace_id, "name": name, "write_key": ws.write_key, "admin_key": ws.admin_key})
        }
        WorkspaceCommand::List { .. } => json!(store.list_workspaces().await?),
    };
    println!("{out}");
    backend.close().await;
    Ok(())
}

pub async fn keys(config: Config, command: KeysCommand) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let out = match command {
        KeysCommand::Create { workspace, role, .. } => {
            let ws = existing(store.as_ref(), &workspace).await?;
            let role: KeyRole = role.parse()?;
            let key = NewApiKey::generate(&ws, role, chrono::Utc::now());
            store.insert_key(&key.key).await?;
            json!({"key_id": key.key.key_id, "workspace_id": ws, "role": role, "key": key.secret})
        }
        KeysCommand::List { workspace, .. } => {
            let ws = existing(store.as_ref(), &workspace).await?;
            json!(store.list_keys(&ws).await?)
        }
        KeysCommand::Revoke { workspace, key_id, .. } => {
            let ws = existing(store.as_ref(), &workspace).await?;
            if !store.revoke_key(&ws, &key_id, chrono::Utc::now()).await? {
                bail!("workspace {ws} has no active key {key_id}");
            }
            json!({"key_id": key_id, "revoked": true})
        }
    };
    println!("{out}");
    backend.close().await;
    Ok(())
}

/// Adds an operator to `ws` with a password hash of `password`.
pub async fn add_operator(
    store: &dyn store::Store,
    ws: &domain::WorkspaceId,
    email: &str,
    name: &str,
    role: KeyRole,
    password: &str,
) -> Result<store::Operator> {
    if role == KeyRole::Write {
        bail!("an operator's role is admin, member or viewer");
    }
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.contains(char::is_whitespace) {
        bail!("{email:?} is not an email address");
    }
    server::ui::password::check(password).map_err(|e| anyhow::anyhow!(e))?;
    let op = store::Operator {
        operator_id: format!("op_{}", domain::random_token(12)),
        workspace_id: ws.clone(),
        email: email.clone(),
        name: name.to_owned(),
        role,
        password_hash: Some(server::ui::password::hash(password)),
        created_at: chrono::Utc::now(),
        disabled_at: None,
    };
    store.insert_operator(&op).await.with_context(|| format!("adding operator {email}"))?;
    store
        .append_audit(&store::AuditEntry {
            seq: 0,
            workspace_id: ws.clone(),
            actor: "cli".into(),
            action: "operator.add".into(),
            target: op.operator_id.clone(),
            details: json!({"email": email, "role": role.as_str()}),
            at: op.created_at,
        })
        .await?;
    Ok(op)
}

pub async fn operators(config: Config, command: crate::cli::OperatorCommand) -> Result<()> {
    use crate::cli::OperatorCommand;
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let out = match command {
        OperatorCommand::Add { workspace, email, role, name, .. } => {
            let ws = existing(store.as_ref(), &workspace).await?;
            let role: KeyRole = role.parse()?;
            let password = match std::env::var("STEWARD_OPERATOR_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprint!("Password for {email}: ");
                    }
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_owned());
            let op = add_operator(store.as_ref(), &ws, &email, &name, role, &password).await?;
            json!(op)
        }
        OperatorCommand::List { workspace, .. } => {
            let ws = existing(store.as_ref(), &workspace).await?;
            json!(store.list_operators(&ws).await?)
        }
    };
    println!("{out}");
    backend.close().await;
    Ok(())
}

pub async fn replay(config: Config, workspace: &str) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let ws = existing(store.as_ref(), workspace).await?;
    let processor = processor::Processor::new(store, processor::ProcessorConfig::default());
    let n = processor.replay(&ws).await?;
    println!("{}", json!({"workspace_id": ws, "replayed_events": n}));
    backend.close().await;
    Ok(())
}

pub async fn import(config: Config, workspace: &str, options: crate::import::Options) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let ws = existing(store.as_ref(), workspace).await?;
    let started = std::time::Instant::now();
    let result = crate::import::import(store, &ws, &options).await;
    backend.close().await;
    let imported = result?;
    println!(
        "{}",
        json!({"workspace_id": ws, "rows": imported.rows, "stored": imported.stored,
               "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0})
    );
    Ok(())
}
