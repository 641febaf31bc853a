//! The ScanJob controller: watches ScanJobs and the Jobs they own, and runs the reconcile
//! pipeline observe → decide → build → apply → status for each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::allow::NfsAllowList;
use crate::build::WorkerDefaults;
use crate::crd::{NAME_LABEL, ScanJob};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, ReasonLabel};
use crate::observe::Observed;

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub defaults: WorkerDefaults,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The NFS exports a `source.nfs` may name.
    pub nfs_allowed: NfsAllowList,
}

impl Context {
    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

async fn reconcile(sj: Arc<ScanJob>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let namespace = sj.namespace().ok_or(Error::MissingField("namespace"))?;
    let name = sj.name_any();
    let jobs = ctx.api::<Job>(&namespace);
    let scanjobs = ctx.api::<ScanJob>(&namespace);
    if sj.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the Jobs.
        return Ok(Action::await_change());
    }

    let status = sj.status.clone().unwrap_or_default();
    let active: Vec<String> = status
        .current_run
        .iter()
        .chain(&status.concurrent_runs)
        .map(|r| r.id.clone())
        .collect();
    let mut observed = Observed::read(&jobs, &ctx.api::<Pod>(&namespace), &name, &active).await?;
    observed.not_allowed = ctx.nfs_allowed.refusal(&sj);
    let decision = crate::decide::decide(&sj, &observed, chrono::Utc::now());

    crate::apply::jobs(&jobs, &sj, &decision, &ctx.defaults).await?;
    if !crate::apply::status(&scanjobs, &sj, &decision).await? {
        // Decided from a stale copy: its transitions did not happen. Decide again once the
        // cache has the current ScanJob.
        tracing::debug!(scanjob = %name, "status conflict: the ScanJob changed since it was read");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    crate::apply::events(&ctx.recorder, &sj, &decision.transitions).await;
    for t in &decision.transitions {
        ctx.metrics.record(t);
    }
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(
        scanjob = %name,
        namespace = %namespace,
        phase = ?decision.status.phase,
        created = decision.create.len(),
        deleted_runs = decision.delete_runs.len(),
        requeue_after_ms = decision.requeue_after.as_millis() as u64,
        "reconciled"
    );
    Ok(Action::requeue(decision.requeue_after))
}

fn error_policy(sj: Arc<ScanJob>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(scanjob = %sj.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_failures
        .get_or_create(&ReasonLabel {
            reason: error.metric_label().into(),
        })
        .inc();
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown` resolves; sets `ready` once the ScanJob watch has synced.
pub async fn run(
    ctx: Context,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (scanjobs, jobs) = match &ctx.namespace {
        Some(ns) => (
            Api::<ScanJob>::namespaced(ctx.client.clone(), ns),
            Api::<Job>::namespaced(ctx.client.clone(), ns),
        ),
        None => (
            Api::<ScanJob>::all(ctx.client.clone()),
            Api::<Job>::all(ctx.client.clone()),
        ),
    };
    let controller = Controller::new(scanjobs, watcher::Config::default().any_semantic())
        .owns(
            jobs,
            watcher::Config::default().labels(NAME_LABEL).any_semantic(),
        )
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness is one oneshot receiver shared by its waiters, and only the last
        // to poll is woken (the controller's own applier): poll again until it reports ready.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    ready.store(true, Ordering::SeqCst);
                    tracing::info!("ScanJob watch synced; ready");
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
    });
    controller
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

/// The event reporter for this operator instance.
pub fn recorder(client: Client) -> Recorder {
    let instance = std::env::var("POD_NAME").ok();
    Recorder::new(
        client,
        Reporter {
            controller: "scanjob-operator".into(),
            instance,
        },
    )
}

#[cfg(test)]
mod tests {
    //! The reconcile's IO against a scripted API server: a decision made from a stale copy of
    //! the ScanJob is written nowhere and announced nowhere.

    use http::Method;
    use kube::runtime::events::Reporter;
    use serde_json::json;

    use super::*;
    use crate::fixtures::{ApiServer, Exchange};
    use crate::metrics::OutcomeLabel;

    const JOBS: &str = "/apis/batch/v1/namespaces/data/jobs";
    const PODS: &str = "/api/v1/namespaces/data/pods";
    const STATUS: &str = "/apis/scanjob.dev/v1alpha1/namespaces/data/scanjobs/nightly/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/data/events";

    /// The ScanJob as a cache may still show it after its run was published: merging, while
    /// the run's Jobs are already gone.
    fn merging_scanjob() -> ScanJob {
        let mut sj: ScanJob =
            serde_saphyr::from_str(include_str!("../tests/fixtures/scanjob.yaml")).unwrap();
        sj.metadata.resource_version = Some("41".into());
        sj.status = Some(
            serde_json::from_value(json!({
                "currentRun": {
                    "id": "20261123t000000z", "trigger": "Schedule",
                    "scheduledTime": "2026-11-23T00:00:00Z", "startTime": "2026-11-23T00:00:02Z",
                    "stage": "Merging",
                    "shards": {"total": 3, "succeeded": 3, "failed": 0, "active": 0}
                },
                "lastScheduleTime": "2026-11-23T00:00:00Z"
            }))
            .unwrap(),
        );
        sj
    }

    fn context(server: &ApiServer) -> Arc<Context> {
        let client = server.client();
        Arc::new(Context {
            client: client.clone(),
            namespace: Some("data".into()),
            defaults: WorkerDefaults {
                image: "scanjob".into(),
                service_account: "scanjob-worker".into(),
            },
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "scanjob-operator".into(),
                    instance: None,
                },
            ),
            metrics: Arc::new(Metrics::default()),
            nfs_allowed: NfsAllowList::default(),
        })
    }

    fn empty_list(kind: &str, api_version: &str) -> serde_json::Value {
        json!({"kind": kind, "apiVersion": api_version, "metadata": {}, "items": []})
    }

    /// The reads of one reconcile of the merging run: no Jobs, no pods.
    fn reads() -> Vec<Exchange> {
        vec![
            Exchange::new(Method::GET, JOBS, 200, empty_list("JobList", "batch/v1")),
            Exchange::new(Method::GET, PODS, 200, empty_list("PodList", "v1")),
        ]
    }

    fn failed_runs(ctx: &Context) -> u64 {
        ctx.metrics
            .runs
            .get_or_create(&OutcomeLabel {
                outcome: "failed".into(),
            })
            .get()
    }

    #[tokio::test]
    async fn a_decision_from_a_stale_scanjob_is_dropped_and_made_again() {
        let mut script = reads();
        script.push(Exchange::conflict(Method::PATCH, STATUS));
        let server = ApiServer::new(script);
        let ctx = context(&server);
        let action = reconcile(Arc::new(merging_scanjob()), ctx.clone())
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(Duration::from_millis(500)));
        assert_eq!(
            server.seen(),
            [
                format!("GET {JOBS}"),
                format!("GET {PODS}"),
                format!("PATCH {STATUS}")
            ],
            "no Event for a run failure that was never written"
        );
        assert_eq!(server.unused(), 0);
        assert_eq!(failed_runs(&ctx), 0, "nor a metric");
    }

    /// The same reconcile from a current ScanJob announces the decision: the stale path above
    /// is the conflict's doing, not the script's.
    #[tokio::test]
    async fn a_decision_from_the_current_scanjob_is_written_and_announced() {
        let mut script = reads();
        script.push(Exchange::new(
            Method::PATCH,
            STATUS,
            200,
            serde_json::to_value(merging_scanjob()).unwrap(),
        ));
        script.push(Exchange::new(
            Method::POST,
            EVENTS,
            201,
            json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "nightly.1", "namespace": "data"},
                "eventTime": "2026-11-23T00:20:00.000000Z"
            }),
        ));
        let server = ApiServer::new(script);
        let ctx = context(&server);
        let action = reconcile(Arc::new(merging_scanjob()), ctx.clone())
            .await
            .unwrap();
        assert_ne!(action, Action::requeue(Duration::from_millis(500)));
        assert_eq!(server.seen().last(), Some(&format!("POST {EVENTS}")));
        assert_eq!(server.unused(), 0);
        assert_eq!(failed_runs(&ctx), 1);
    }
}
