//! The kubelet stand-in as a process: `kubelet-standin --namespace NS [--image NAME=BIN ...]`.

use std::path::PathBuf;

use clap::Parser;
use scanjob_e2e::kubelet::{self, ImageMap, KubeletConfig};

/// Runs pods of a namespace (or matching a selector) as local processes and reports their status.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, short)]
    namespace: Option<String>,
    /// Watch only pods matching this label selector.
    #[arg(long, short = 'l')]
    selector: Option<String>,
    /// Map an image (full reference or repository name) to a local binary: NAME=PATH. `scanjob`
    /// maps to the workspace's release build unless overridden.
    #[arg(long = "image", value_parser = parse_pair)]
    images: Vec<(String, PathBuf)>,
    /// Map a volume by name to a local directory: NAME=DIR.
    #[arg(long = "volume", value_parser = parse_pair)]
    volumes: Vec<(String, PathBuf)>,
    /// Containers running at once.
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// Per-pod directories: logs, termination messages, emptyDir volumes.
    #[arg(long, default_value = "kubelet-standin")]
    work_dir: PathBuf,
}

fn parse_pair(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {s:?}"))?;
    Ok((k.to_owned(), PathBuf::from(v)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut images = ImageMap::with_scanjob();
    for (image, binary) in args.images {
        images.insert(image, binary);
    }
    let config = KubeletConfig {
        namespace: args.namespace,
        label_selector: args.selector,
        images,
        volumes: args.volumes.into_iter().collect(),
        slots: args.slots,
        work_dir: args.work_dir,
        ..KubeletConfig::for_namespace("", "")
    };
    let client = kube::Client::try_default().await?;
    // Returning drops the stand-in, which kills the processes it started.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = kubelet::run(client, config) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
    }
}
