//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// The most days `steward score --history` scores before its day: a year of trends. Each day
/// costs about a full rescore and writes a history row per account.
const HISTORY_DAYS_MAX: u32 = 365;

#[derive(Parser, Debug)]
#[command(name = "steward", version, about = "A self-hosted, autonomous customer success manager")]
pub struct Cli {
    /// Configuration file (default: ./steward.toml if it exists).
    #[arg(long, global = true, env = "STEWARD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Location {
    /// Directory of the embedded database (default ./steward-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: capture, processing and the API.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        location: Location,
        /// Benchmarks only: validate events and answer without storing them.
        #[arg(long, hide = true)]
        discard_events: bool,
    },
    /// Run the server with a fresh workspace full of simulated customers.
    Demo {
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where to keep the demo's database (default: a new directory under the system's temp dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 300)]
        accounts: usize,
        #[arg(long, default_value_t = 180)]
        days: u32,
        /// Fill the workspace, print its keys, and exit instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Print the effective configuration, secrets redacted.
    Config {
        #[command(flatten)]
        location: Location,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the operators who sign in to the dashboard.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Process a workspace's event log again from the start, rebuilding people and accounts.
    Replay {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        location: Location,
    },
    /// Load a workspace's history from a file: accounts, people, subscriptions, events or
    /// tickets, as CSV with a header or JSON lines (either optionally gzipped). Checks the
    /// whole file first; importing it again changes nothing.
    Import {
        #[arg(long)]
        workspace: String,
        kind: crate::import::Kind,
        file: PathBuf,
        /// Map a file's column (or JSON field) to Steward's name for it: `--column event_time=ts`.
        /// Columns Steward does not know become traits, attributes or properties.
        #[arg(long = "column", value_name = "STEWARD_NAME=FILE_COLUMN", value_parser = crate::import::column_mapping)]
        columns: Vec<(String, String)>,
        /// Whether `user_id` names a user of the workspace or of its account (events, people,
        /// tickets).
        #[arg(long, value_enum, default_value = "workspace")]
        user_scope: crate::import::UserScope,
        /// Currency of amounts in files without a currency column.
        #[arg(long, default_value = "USD")]
        currency: String,
        #[command(flatten)]
        location: Location,
    },
    /// Train the churn and expansion models on the workspace's whole history. Each replaces
    /// the active one only if it does at least as well on a time-based holdout; prints what
    /// was decided and why, with the model cards, as JSON.
    Train {
        #[arg(long)]
        workspace: String,
        /// The day the data ends (default: the day after the last day with usage).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        #[command(flatten)]
        location: Location,
    },
    /// Score every account as of a day (default: today): health, churn per horizon,
    /// expansion, and the alerts they raise. Stores the scores and their daily history.
    Score {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
        /// First score each of the DAYS days before it as it was then, into the history alone
        /// (the trends of data imported with its past; no alert, no band change). From 1 to 365.
        #[arg(long, value_name = "DAYS", allow_negative_numbers = true,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(HISTORY_DAYS_MAX)))]
        history: Option<u32>,
        #[command(flatten)]
        location: Location,
    },
    /// Train the churn model on the workspace's history before a test period, and print its
    /// model card: AUC, PR-AUC, top-decile lift and calibration on the test period, per horizon.
    Evaluate {
        #[arg(long)]
        workspace: String,
        /// The day the data ends (default: the day after the last day with usage).
        #[arg(long)]
        as_of: Option<chrono::NaiveDate>,
        /// The first observation date tested (default: four months before `--as-of`).
        #[arg(long)]
        test_from: Option<chrono::NaiveDate>,
        /// Print the model card as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Forecast churn for every account covered at a date, trained on what was known then;
    /// writes `account_id,observation_date,horizon_days,churn_probability` as CSV.
    Predict {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        at: chrono::NaiveDate,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        location: Location,
    },
    /// The playbooks that ship with Steward: journeys for onboarding, activation, retention,
    /// renewal and support follow-up, with their segments and email templates.
    Playbooks {
        #[command(subcommand)]
        command: PlaybooksCommand,
    },
    /// Measure ingest throughput and latency.
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// Create a workspace; prints its id, write key and admin key as JSON.
    Create {
        name: String,
        #[command(flatten)]
        location: Location,
    },
    /// List workspaces as JSON.
    List {
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Subcommand, Debug)]
pub enum PlaybooksCommand {
    /// Save the playbooks into a workspace, through the same checks as the API: segments and
    /// email templates whose names are not taken yet, and journeys (disabled unless
    /// `--enable`) whose names are not taken yet. Running it again changes nothing.
    Install {
        #[arg(long)]
        workspace: String,
        /// Enable the journeys it saves: runs start for the accounts in their segments.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Add an operator who signs in with an email and a password: the password is read from
    /// `STEWARD_OPERATOR_PASSWORD`, else from standard input (its first line). Prints the
    /// operator as JSON.
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        /// admin, member or viewer.
        #[arg(long)]
        role: String,
        /// The name shown in the dashboard (default: the email's local part).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        location: Location,
    },
    /// List a workspace's operators as JSON.
    List {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints it (shown once) as JSON.
    Create {
        #[arg(long)]
        workspace: String,
        /// admin, member, viewer or write.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        location: Location,
    },
    /// List a workspace's keys (without secrets) as JSON.
    List {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        location: Location,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        workspace: String,
        key_id: String,
        #[command(flatten)]
        location: Location,
    },
}

pub async fn dispatch(cli: Cli, config: Config) -> Result<()> {
    match cli.command {
        Command::Serve { discard_events, .. } => crate::run::serve(config, discard_events).await,
        Command::Demo { seed, accounts, days, no_serve, .. } => {
            crate::demo::run(config, seed, accounts, days, no_serve).await
        }
        Command::Config { .. } => {
            print!("{}", config.to_redacted_toml()?);
            Ok(())
        }
        Command::Workspace { command } => crate::admin::workspace(config, command).await,
        Command::Keys { command } => crate::admin::keys(config, command).await,
        Command::Operator { command } => crate::admin::operators(config, command).await,
        Command::Replay { workspace, .. } => crate::admin::replay(config, &workspace).await,
        Command::Bench { command } => crate::bench::run(config, command).await,
        Command::Playbooks { command: PlaybooksCommand::Install { workspace, enable, .. } } => {
            crate::playbooks::install_command(config, &workspace, enable).await
        }
        Command::Evaluate { workspace, as_of, test_from, json, .. } => {
            crate::intel::evaluate(config, &workspace, as_of, test_from, json).await
        }
        Command::Train { workspace, as_of, .. } => crate::intel::train(config, &workspace, as_of).await,
        Command::Score { workspace, day, history, .. } => crate::intel::score(config, &workspace, day, history).await,
        Command::Predict { workspace, at, out, .. } => crate::intel::predict(config, &workspace, at, &out).await,
        Command::Import { workspace, kind, file, columns, user_scope, currency, .. } => {
            crate::keep_freed_memory();
            let currency = domain::Currency::parse(&currency)?;
            let options = crate::import::Options { kind, file, columns, user_scope, currency };
            crate::admin::import(config, &workspace, options).await
        }
    }
}
