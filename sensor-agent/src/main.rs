//! `tellijn-agent --config agent.toml`: the sensor agent.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tellijn_agent::AgentConfig;
use tellijn_wire::Clock;

/// Tellijn sensor agent: sends counts, and only counts, to the Tellijn broker.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Path of agent.toml.
    #[arg(long)]
    config: PathBuf,
    /// Log lines on stderr as text or as one JSON object per line (for Loki, ELK).
    #[arg(long, value_enum, default_value_t)]
    log_format: tellijn_agent::logging::LogFormat,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tellijn_agent::logging::init(args.log_format, "info");
    // Exactly one rustls crypto provider: ring (the agent links no other).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = AgentConfig::load(&args.config)?;
    let secret = std::fs::read_to_string(&cfg.secret_file)
        .with_context(|| format!("cannot read the secret file {}", cfg.secret_file.display()))?;
    let totals = tellijn_agent::run(&cfg, secret.trim(), Clock::system(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    tracing::info!(
        messages = totals.messages,
        unacked = totals.unacked,
        "Agent stopped."
    );
    Ok(())
}
