//! Prometheus metrics, all named `scanjob_*`, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::crd::ShardCounts;
use crate::decide::Transition;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// The operator's metrics and the registry that encodes them.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_failures: Family<ReasonLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub runs: Family<OutcomeLabel, Counter>,
    pub run_duration: Family<OutcomeLabel, Histogram>,
    pub shards: Family<OutcomeLabel, Counter>,
    pub runs_skipped: Family<ReasonLabel, Counter>,
    pub preemptions: Counter,
}

fn run_buckets() -> Histogram {
    // 10 s … ~11 h: a run is minutes to hours.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        10.0, 2.0, 13,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scanjob");
        let reconciles = Counter::default();
        registry.register(
            "operator_reconciles",
            "Reconciles of ScanJobs",
            reconciles.clone(),
        );
        let reconcile_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "operator_reconcile_failures",
            "Reconciles that failed, by reason",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 14),
        );
        registry.register(
            "operator_reconcile_duration_seconds",
            "Time of one reconcile",
            reconcile_duration.clone(),
        );
        let runs = Family::<OutcomeLabel, Counter>::default();
        registry.register("runs", "Runs finished, by outcome", runs.clone());
        let run_duration = Family::<OutcomeLabel, Histogram>::new_with_constructor(
            run_buckets as fn() -> Histogram,
        );
        registry.register(
            "run_duration_seconds",
            "Wall time of finished runs, from start to publish or failure",
            run_duration.clone(),
        );
        let shards = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "shards",
            "Shards of finished runs, by outcome",
            shards.clone(),
        );
        let runs_skipped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "runs_skipped",
            "Scheduled runs not started, by reason",
            runs_skipped.clone(),
        );
        let preemptions = Counter::default();
        registry.register(
            "run_preemptions",
            "Times a queue suspended a run's Job after admitting it",
            preemptions.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_failures,
            reconcile_duration,
            runs,
            run_duration,
            shards,
            runs_skipped,
            preemptions,
        }
    }
}

impl Metrics {
    pub fn record(&self, transition: &Transition) {
        match transition {
            Transition::RunStarted { .. }
            | Transition::ShardFailed { .. }
            | Transition::RunQueued { .. }
            | Transition::RunAdmitted { .. }
            | Transition::PodsUnschedulable { .. } => {}
            Transition::RunPreempted { .. } => {
                self.preemptions.inc();
            }
            Transition::RunSkipped { reason, .. } => {
                self.runs_skipped
                    .get_or_create(&ReasonLabel {
                        reason: reason.clone(),
                    })
                    .inc();
            }
            Transition::RunSucceeded {
                seconds, shards, ..
            } => self.run_finished("succeeded", *seconds, shards),
            Transition::RunFailed {
                seconds, shards, ..
            } => self.run_finished("failed", *seconds, shards),
        }
    }

    fn run_finished(&self, outcome: &str, seconds: f64, shards: &ShardCounts) {
        let label = |o: &str| OutcomeLabel { outcome: o.into() };
        self.runs.get_or_create(&label(outcome)).inc();
        self.run_duration
            .get_or_create(&label(outcome))
            .observe(seconds);
        self.shards
            .get_or_create(&label("succeeded"))
            .inc_by(shards.succeeded.max(0) as u64);
        self.shards
            .get_or_create(&label("failed"))
            .inc_by(shards.failed.max(0) as u64);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
