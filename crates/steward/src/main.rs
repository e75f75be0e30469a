//! The `steward` binary: a thin layer of commands over the library crates.

mod admin;
mod bench;
mod bench_connectors;
mod bench_journeys;
mod bench_score;
mod bench_segments;
mod bench_ui;
mod cli;
mod client;
mod config;
mod demo;
mod import;
mod intel;
mod playbooks;
mod run;

use anyhow::Result;
use clap::Parser;

// Capture allocates and frees many small JSON values per event; mimalloc does that at a
// fraction of the system allocator's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    let config = config::Config::load(&cli)?;
    config::init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(cli::dispatch(cli, config))
}
