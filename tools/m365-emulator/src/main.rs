//! m365-emulator binary: `m365-emulator --port P --seed FILE`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use m365_emulator::{AppState, Seed, State};

/// A local Microsoft Graph v1.0 + identity platform for tests and rehearsals.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TCP port on 127.0.0.1 (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed file (JSON, see README.md); an empty world when absent.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr so stdout carries only the "listening on" line scripts read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading seed {}", path.display()))?;
            Seed::from_json(&text).with_context(|| format!("parsing seed {}", path.display()))?
        }
        None => Seed::default(),
    };
    let state = State::from_seed(seed).context("building state from seed")?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    // Scripts read this line to learn the port when `--port 0` is used.
    println!("m365-emulator listening on http://{addr}");
    tracing::info!(%addr, "m365-emulator listening");
    m365_emulator::serve_with_shutdown(listener, AppState::new(state), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
