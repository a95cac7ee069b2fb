//! devstack binary: `devstack --template template.yaml --moto URL [--port P] [--env K=V]...`.
//!
//! stdout carries only the lines scripts read (`devstack api URL`, `devstack token TOKEN`,
//! `devstack ready`); logs and the functions' output go to stderr.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};

/// Runs template.yaml's wiring locally against moto.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The SAM template; its folder is the cargo workspace the functions are built in.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// moto server URL (defaults to AWS_ENDPOINT_URL).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    moto: String,
    /// Port of the local API on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Extra environment variable for every function, K=V (repeatable; wins over the template).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Template parameter value, NAME=VALUE (repeatable), e.g. Stage=local.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Secret value by logical id or secret name, ID=VALUE (repeatable), instead of a
    /// generated one.
    #[arg(long = "secret", value_name = "ID=VALUE")]
    secrets: Vec<String>,
    /// Prebuilt function executable, BINARY=PATH (repeatable); others are built by cargo.
    #[arg(long = "bin", value_name = "BINARY=PATH")]
    binaries: Vec<String>,
    /// Schedules fire this many times faster than the template says.
    #[arg(long, default_value_t = 1.0)]
    schedule_speedup: f64,
    /// API bearer token (default: DEVSTACK_TOKEN, else random).
    #[arg(long, env = "DEVSTACK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stack name: prefix of unnamed resources and functions.
    #[arg(long, default_value = "devstack")]
    stack_name: String,
}

fn pair(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("expected KEY=VALUE, got {text:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVSTACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut options = devstack::Options::new(&args.template, &args.moto);
    options.port = args.port;
    options.env = args.env.iter().map(|e| pair(e)).collect::<Result<_, _>>()?;
    options.parameters = args
        .params
        .iter()
        .map(|e| pair(e))
        .collect::<Result<_, _>>()?;
    options.secrets = args
        .secrets
        .iter()
        .map(|e| pair(e).map(|(k, v)| (k, SecretString::from(v))))
        .collect::<Result<_, _>>()?;
    options.binaries = args
        .binaries
        .iter()
        .map(|e| pair(e).map(|(k, v)| (k, PathBuf::from(v))))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    options.schedule_speedup = args.schedule_speedup;
    options.token = args.token.map(SecretString::from);
    options.stack_name = args.stack_name;

    let stack = devstack::start(options)
        .await
        .with_context(|| format!("starting devstack from {}", args.template.display()))?;
    // Scripts read these lines.
    println!("devstack api {}", stack.api_url());
    println!("devstack token {}", stack.token().expose_secret());
    println!("devstack ready");
    tracing::info!(wiring = %stack.wiring(), "devstack running; Ctrl-C stops it");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    stack.shutdown().await;
    Ok(())
}
