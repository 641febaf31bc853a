//! `scanjob-operator`: runs the ScanJob controller with its metrics and health endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use kube::Client;
use scanjob_operator::allow::NfsAllowList;
use scanjob_operator::build::WorkerDefaults;
use scanjob_operator::controller::{self, Context};
use scanjob_operator::metrics::Metrics;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "The ScanJob operator: runs table-of-contents scans as Kubernetes Jobs"
)]
struct Cli {
    /// Watch ScanJobs in this namespace only; default: all namespaces.
    #[arg(long, env = "SCANJOB_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Image of worker pods when a ScanJob does not name one.
    #[arg(long, env = "SCANJOB_WORKER_IMAGE", default_value = concat!("ghcr.io/scanjob/scanjob:", env!("CARGO_PKG_VERSION")))]
    worker_image: String,
    /// ServiceAccount of worker pods when a ScanJob does not name one.
    #[arg(
        long,
        env = "SCANJOB_WORKER_SERVICE_ACCOUNT",
        default_value = "scanjob-worker"
    )]
    worker_service_account: String,
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, env = "SCANJOB_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format: json or text.
    #[arg(long, env = "SCANJOB_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// The NFS exports ScanJobs may read directly (`source.nfs`): a JSON list of grants, each
    /// `{namespaces, server, export, uids, gids}`. Without it no NFS source is allowed.
    #[arg(long, env = "SCANJOB_NFS_ALLOWED", value_name = "JSON", value_parser = NfsAllowList::parse)]
    nfs_allowed: Option<NfsAllowList>,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (addr, serve) = scanjob_operator::server::bind(
        cli.http_addr,
        metrics.clone(),
        ready.clone(),
        stopped(stop_rx.clone()),
    )
    .await?;
    tracing::info!(%addr, namespace = ?cli.namespace, worker_image = %cli.worker_image, "scanjob-operator starting");
    let server = tokio::spawn(serve);

    let ctx = Context {
        recorder: controller::recorder(client.clone()),
        client,
        namespace: cli.namespace,
        defaults: WorkerDefaults {
            image: cli.worker_image,
            service_account: cli.worker_service_account,
        },
        metrics,
        nfs_allowed: cli.nfs_allowed.unwrap_or_default(),
    };
    tokio::spawn(async move {
        termination().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    controller::run(ctx, ready, stopped(stop_rx)).await;
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
