//! The Jobs of a run, built from the spec alone (pure, tested from YAML fixtures): a plan Job, an
//! Indexed scan Job with one completion per shard, an Indexed hash Job with one completion per
//! hash pod (when `duplicates.hashBytesPerNight` is set), an Indexed join Job with one
//! completion per merge pod (when `mergePods` is above 1), and a merge Job. Plan, scan and hash
//! pods mount the source volume read-only (a `source.nfs` export they read over the network
//! instead); every pod gets the output Secret as env, runs without an API token
//! under a hardened security context, and reports its JSON summary through its termination
//! message.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretEnvSource, SecurityContext, Sysctl, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use scanjob_contract::args::{Budget, HashArgs, JoinArgs, MergeArgs, PlanArgs, ScanArgs, WalkArgs};
use scanjob_contract::exit::{EXIT_PERMANENT, TERMINATION_LOG_ENV};
use scanjob_contract::layout::{plan_path, run_dir, url_of};

use crate::crd::{
    MIN_PARALLELISM_ANNOTATION, NAME_LABEL, QUEUE_LABEL, RUN_LABEL, STEP_LABEL, ScanJob,
};
/// Where the source volume is mounted in plan and scan pods.
pub const SOURCE_MOUNT: &str = "/scan";
/// Where pods write their one-line JSON summary; the operator copies it into the status.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
pub const CONTAINER: &str = "scanjob";
/// The uid and gid worker pods run as unless `spec.worker.securityContext` says otherwise.
pub const DEFAULT_UID: i64 = 65532;
/// Where every pod has a writable scratch volume (an emptyDir): the root file system is
/// read-only, and the merge's query engine spills to the temporary directory.
pub const SCRATCH_MOUNT: &str = "/tmp";
/// The worker pods' log filter: the worker's `info` lines, everything else at `warn`.
pub const WORKER_LOG_FILTER: &str = "warn,scanjob_worker=info,scanjob=info";
/// The capability `spec.worker.readAllFiles` adds: read and search any file and directory.
pub const READ_ALL_CAPABILITY: &str = "DAC_READ_SEARCH";

/// Where the merge pod finds the `ownerNames` ConfigMap's files.
pub const OWNER_NAMES_MOUNT: &str = "/etc/scanjob/owner-names";

/// The capability hash pods add with `readAllFiles`: open any file with O_NOATIME.
pub const NOATIME_CAPABILITY: &str = "FOWNER";

/// The capability the pods that reach an export add with `source.nfs.reservedPort` on the
/// node's network (`hostNetwork`): bind a port below 1024.
pub const BIND_RESERVED_PORT_CAPABILITY: &str = "NET_BIND_SERVICE";
/// In a pod's own network namespace, `source.nfs.reservedPort` lowers this (namespaced, safe)
/// sysctl instead, to [`RESERVED_PORTS_START`]: no capability at all.
pub const UNPRIVILEGED_PORT_SYSCTL: &str = "net.ipv4.ip_unprivileged_port_start";
/// The lowest port the NFS client binds as a reserved one (as `bindresvport` does).
pub const RESERVED_PORTS_START: u16 = 512;

/// The steps of a run, in order (`Hash` only when the night reads contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Plan,
    Scan,
    Hash,
    Join,
    Merge,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Scan => "scan",
            Step::Hash => "hash",
            Step::Join => "join",
            Step::Merge => "merge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "plan" => Some(Step::Plan),
            "scan" => Some(Step::Scan),
            "hash" => Some(Step::Hash),
            "join" => Some(Step::Join),
            "merge" => Some(Step::Merge),
            _ => None,
        }
    }
}

/// Operator-wide defaults for what a spec leaves out.
#[derive(Debug, Clone)]
pub struct WorkerDefaults {
    pub image: String,
    pub service_account: String,
}

/// The name of a run's Job for `step`: deterministic, so a restarted operator finds it.
pub fn job_name(scanjob: &str, run: &str, step: Step) -> String {
    format!("{scanjob}-{run}-{}", step.as_str())
}

/// What a Job needs beyond the spec: which run, which step, and for the scan the planned shard
/// count (the planner may plan fewer shards than asked for on a small tree), for the hash and
/// join steps their pod counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub run: String,
    pub step: Step,
    pub shards: i32,
    /// The run's merge publishes however much the store shrank.
    pub allow_shrink: bool,
}

/// The output URL without a trailing slash.
fn output_url(sj: &ScanJob) -> String {
    sj.spec.output.url.trim_end_matches('/').to_owned()
}

/// The worker's root: the export's `nfs://` URL, or the mounted volume and its subPath.
fn scan_root(sj: &ScanJob) -> String {
    if let Some(nfs) = &sj.spec.source.nfs {
        return nfs.root();
    }
    match sj
        .spec
        .source
        .sub_path
        .as_deref()
        .map(|p| p.trim_matches('/'))
    {
        Some(sub) if !sub.is_empty() => format!("{SOURCE_MOUNT}/{sub}"),
        _ => SOURCE_MOUNT.to_owned(),
    }
}

/// A spec number as the worker's flag type. The CRD schema keeps each in that type's range
/// except the unbounded operations budget, which saturates rather than fail the worker's parse.
fn flag<T: TryFrom<i64>>(value: impl Into<i64>, saturated: T) -> T {
    T::try_from(value.into().max(0)).unwrap_or(saturated)
}

/// The worker's command line for one step (the contract crate spells the flags).
fn args(sj: &ScanJob, req: &JobRequest) -> Vec<String> {
    let spec = &sj.spec;
    let url = output_url(sj);
    // The plan's top-level count and the scans list with the same threads, under one guard.
    let threads = spec.worker.threads.map(|n| flag(n, usize::MAX));
    let latency_guard_ms = spec
        .source
        .latency_guard_milliseconds
        .map(|ms| flag(ms, u32::MAX));
    // Pods that run at once share the operations budget evenly.
    let ops_per_pod = |pods: i64| {
        spec.source
            .max_ops_per_second
            .map(|budget| flag((budget / pods).max(1), u32::MAX))
    };
    let nfs = spec.source.nfs.as_ref();
    match req.step {
        Step::Plan => PlanArgs {
            root: scan_root(sj),
            shards: flag(spec.shards, u32::MAX),
            out: url.clone(),
            previous: Some(url),
            run: Some(req.run.clone()),
            walk: WalkArgs {
                exclude: spec.source.exclude.clone(),
                one_file_system: spec.source.one_file_system,
                project_level: flag(spec.source.project_level, usize::MAX),
                nfs_uid: nfs.map(|n| flag(n.uid, u32::MAX)),
                nfs_gid: nfs.map(|n| flag(n.gid, u32::MAX)),
                nfs_reserved_port: nfs.is_some_and(|n| n.reserved_port),
                nfs_addresses: nfs.map(|n| n.addresses.clone()).unwrap_or_default(),
            },
            // The plan pod runs alone, before any scan pod: the whole budget is its own.
            threads,
            budget: Budget {
                max_ops_per_second: spec
                    .source
                    .max_ops_per_second
                    .map(|budget| flag(budget.max(1), u32::MAX)),
                latency_guard_ms,
            },
        }
        .to_args(),
        Step::Scan => {
            let pods = i64::from(spec.parallelism.min(req.shards).max(1));
            ScanArgs {
                plan: url_of(&url, &plan_path(&req.run)),
                threads,
                budget: Budget {
                    max_ops_per_second: ops_per_pod(pods),
                    latency_guard_ms,
                },
                // The worker gives up a little before the pod's deadline, so it can say why
                // and exit retryable instead of being killed mid-call.
                deadline_seconds: spec.worker.active_deadline_seconds.map(|deadline| {
                    flag((deadline - (deadline / 10).clamp(1, 60)).max(1), u64::MAX)
                }),
            }
            .to_args()
        }
        Step::Hash => {
            let pods = i64::from(req.shards.max(1));
            let duplicates = &spec.duplicates;
            HashArgs {
                plan: url_of(&url, &plan_path(&req.run)),
                count: flag(pods, u32::MAX),
                max_bytes: flag(duplicates.hash_bytes_per_night / pods, u64::MAX),
                duplicate_min_size: Some(flag(duplicates.min_size, u64::MAX)),
                threads,
                budget: Budget {
                    max_ops_per_second: ops_per_pod(pods),
                    latency_guard_ms,
                },
            }
            .to_args()
        }
        Step::Join => JoinArgs {
            run: url_of(&url, &run_dir(&req.run)),
            count: flag(req.shards.max(1), u32::MAX),
            max_missing_shards: flag(spec.max_failed_shards, u32::MAX),
        }
        .to_args(),
        Step::Merge => MergeArgs {
            run: url_of(&url, &run_dir(&req.run)),
            max_missing_shards: flag(spec.max_failed_shards, u32::MAX),
            keep_snapshots: spec.output.keep_snapshots.map(|k| flag(k, u32::MAX)),
            max_shrink_percent: Some(if req.allow_shrink {
                100
            } else {
                flag(spec.max_shrink_percent.clamp(1, 100), 100)
            }),
            duplicate_min_size: Some(flag(spec.duplicates.min_size, u64::MAX)),
            passwd: spec.owner_names.as_ref().and_then(|o| {
                o.passwd_key
                    .as_ref()
                    .map(|_| format!("{OWNER_NAMES_MOUNT}/passwd"))
            }),
            group: spec.owner_names.as_ref().and_then(|o| {
                o.group_key
                    .as_ref()
                    .map(|_| format!("{OWNER_NAMES_MOUNT}/group"))
            }),
        }
        .to_args(),
    }
}

/// A step's requests and limits: its own from `stepResources`, else `resources` for every
/// step, else its default.
pub fn resources(sj: &ScanJob, step: Step) -> ResourceRequirements {
    let worker = &sj.spec.worker;
    let own = match step {
        Step::Plan => &worker.step_resources.plan,
        Step::Scan => &worker.step_resources.scan,
        Step::Hash => &worker.step_resources.hash,
        Step::Join => &worker.step_resources.join,
        Step::Merge => &worker.step_resources.merge,
    };
    own.clone()
        .or_else(|| worker.resources.clone())
        .unwrap_or_else(|| default_resources(step))
}

/// Requests from each step's measured peak memory (docs/benchmarks.md, the reference scale);
/// join and merge get a memory limit, since their query engine's pool is half of it: 4Gi
/// keeps the 2 GiB pool they were measured with.
pub fn default_resources(step: Step) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    let (requests, limits) = match step {
        Step::Plan | Step::Scan | Step::Hash => {
            (quantities(&[("cpu", "250m"), ("memory", "256Mi")]), None)
        }
        Step::Join | Step::Merge => (
            quantities(&[("cpu", "500m"), ("memory", "1536Mi")]),
            Some(quantities(&[("memory", "4Gi")])),
        ),
    };
    ResourceRequirements {
        requests: Some(requests),
        limits,
        ..ResourceRequirements::default()
    }
}

/// The pods a step's Job runs at once, as its spec asks.
fn pods_at_once(sj: &ScanJob, req: &JobRequest) -> i32 {
    match req.step {
        Step::Scan => sj.spec.parallelism.min(req.shards),
        Step::Hash | Step::Join => req.shards,
        Step::Plan | Step::Merge => 1,
    }
}

/// The worker pods' labels: the user's `podLabels`, under the operator's own.
fn pod_labels(sj: &ScanJob, req: &JobRequest) -> BTreeMap<String, String> {
    let mut labels = sj.spec.worker.pod_labels.clone();
    labels.extend(self::labels(sj, req));
    labels
}

fn labels(sj: &ScanJob, req: &JobRequest) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            NAME_LABEL.to_owned(),
            sj.metadata.name.clone().unwrap_or_default(),
        ),
        (RUN_LABEL.to_owned(), req.run.clone()),
        (STEP_LABEL.to_owned(), req.step.as_str().to_owned()),
        ("app.kubernetes.io/name".to_owned(), "scanjob".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "scanjob-operator".to_owned(),
        ),
    ])
}

fn pod_security_context(sj: &ScanJob, step: Step) -> PodSecurityContext {
    let mut context = default_pod_security_context(sj);
    if let Some(uid) = sj.spec.worker.run_as_user {
        context.run_as_user = Some(uid);
        if uid == 0 {
            context.run_as_non_root = Some(false);
        }
    }
    if reserved_port(sj, step) && !sj.spec.worker.host_network {
        // In the pod's own network namespace, ports from 512 up become unprivileged: the
        // client binds one without any capability, and nothing else changes.
        context.sysctls.get_or_insert_default().push(Sysctl {
            name: UNPRIVILEGED_PORT_SYSCTL.into(),
            value: RESERVED_PORTS_START.to_string(),
        });
    }
    context
}

/// Whether the pods of `step` bind a reserved port: the scan and hash pods connect to the
/// export (the plan only records the choice for them).
fn reserved_port(sj: &ScanJob, step: Step) -> bool {
    matches!(step, Step::Scan | Step::Hash)
        && sj.spec.source.nfs.as_ref().is_some_and(|n| n.reserved_port)
}

fn default_pod_security_context(sj: &ScanJob) -> PodSecurityContext {
    sj.spec
        .worker
        .security_context
        .clone()
        .unwrap_or(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(DEFAULT_UID),
            run_as_group: Some(DEFAULT_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        })
}

/// Nothing a scanner needs: no privilege escalation, no capabilities, no writes to its image;
/// with `readAllFiles`, the one capability that reads everything, and for hash pods the one
/// that opens any file without moving its atime (the source stays mounted read-only); with
/// `source.nfs.reservedPort` on the node's network, the one that binds a reserved port.
fn container_security_context(sj: &ScanJob, step: Step) -> SecurityContext {
    let mut add = Vec::new();
    if sj.spec.worker.read_all_files {
        add.push(READ_ALL_CAPABILITY.to_owned());
        if step == Step::Hash {
            add.push(NOATIME_CAPABILITY.to_owned());
        }
    }
    if reserved_port(sj, step) && sj.spec.worker.host_network {
        add.push(BIND_RESERVED_PORT_CAPABILITY.to_owned());
    }
    let add = (!add.is_empty()).then_some(add);
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add,
        }),
        ..SecurityContext::default()
    }
}

/// The `file://` path of the output, where its shared volume is mounted.
fn output_mount(sj: &ScanJob) -> Option<String> {
    sj.spec.output.volume.as_ref()?;
    let path = sj.spec.output.url.strip_prefix("file://")?;
    Some(path.trim_end_matches('/').to_owned())
}

fn pod_template(sj: &ScanJob, req: &JobRequest, defaults: &WorkerDefaults) -> PodTemplateSpec {
    let spec = &sj.spec;
    let worker = &spec.worker;
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let (Step::Plan | Step::Scan | Step::Hash, Some(source)) = (req.step, &spec.source.volume) {
        volumes.push(source.to_volume("source"));
        mounts.push(VolumeMount {
            name: "source".into(),
            mount_path: SOURCE_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    volumes.push(Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: worker.scratch_size_limit.clone(),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    mounts.push(VolumeMount {
        name: "scratch".into(),
        mount_path: SCRATCH_MOUNT.into(),
        ..VolumeMount::default()
    });
    if let (Step::Merge, Some(names)) = (req.step, &spec.owner_names) {
        let items = [(&names.passwd_key, "passwd"), (&names.group_key, "group")]
            .into_iter()
            .filter_map(|(key, path)| {
                key.as_ref().map(|key| KeyToPath {
                    key: key.clone(),
                    path: path.into(),
                    mode: None,
                })
            })
            .collect();
        volumes.push(Volume {
            name: "owner-names".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map_name.clone(),
                items: Some(items),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "owner-names".into(),
            mount_path: OWNER_NAMES_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if let (Some(volume), Some(path)) = (&spec.output.volume, output_mount(sj)) {
        volumes.push(volume.to_volume("output"));
        mounts.push(VolumeMount {
            name: "output".into(),
            mount_path: path,
            ..VolumeMount::default()
        });
    }
    let env_from = spec.output.secret_ref.as_ref().map(|s| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.name.clone(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]
    });
    let container = Container {
        name: CONTAINER.into(),
        image: Some(
            worker
                .image
                .clone()
                .unwrap_or_else(|| defaults.image.clone()),
        ),
        args: Some(args(sj, req)),
        env: Some(vec![
            EnvVar {
                name: TERMINATION_LOG_ENV.into(),
                value: Some(TERMINATION_LOG.into()),
                ..EnvVar::default()
            },
            // A few lines per step (the plan's shards, a shard's totals, the merge's memory
            // pool and passes), so `kubectl logs` tells what a pod decided.
            EnvVar {
                name: "RUST_LOG".into(),
                value: Some(WORKER_LOG_FILTER.into()),
                ..EnvVar::default()
            },
        ]),
        env_from,
        resources: Some(resources(sj, req.step)),
        security_context: Some(container_security_context(sj, req.step)),
        termination_message_path: Some(TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(sj, req)),
            annotations: (!worker.pod_annotations.is_empty())
                .then(|| worker.pod_annotations.clone()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(
                worker
                    .service_account_name
                    .clone()
                    .unwrap_or_else(|| defaults.service_account.clone()),
            ),
            automount_service_account_token: Some(false),
            host_network: worker.host_network.then_some(true),
            security_context: Some(pod_security_context(sj, req.step)),
            node_selector: (!worker.node_selector.is_empty()).then(|| worker.node_selector.clone()),
            affinity: worker.affinity.clone(),
            tolerations: (!worker.tolerations.is_empty()).then(|| worker.tolerations.clone()),
            priority_class_name: worker.priority_class_name.clone(),
            active_deadline_seconds: match req.step {
                Step::Scan | Step::Hash => worker.active_deadline_seconds,
                _ => None,
            },
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// Fail at once on the worker's permanent exit code; never count node disruptions.
fn pod_failure_policy(step: Step) -> PodFailurePolicy {
    let action = if matches!(step, Step::Scan | Step::Hash) {
        "FailIndex"
    } else {
        "FailJob"
    };
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: action.into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.into()),
                    operator: "In".into(),
                    values: vec![EXIT_PERMANENT],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: Some("True".into()),
                }]),
            },
        ],
    }
}

/// The Job's labels and annotations: with `queueName`, the queue's label, and for a Job of
/// several pods the annotation that lets the queue admit fewer.
fn job_metadata(
    sj: &ScanJob,
    req: &JobRequest,
) -> (BTreeMap<String, String>, Option<BTreeMap<String, String>>) {
    let mut labels = labels(sj, req);
    let Some(queue) = &sj.spec.queue_name else {
        return (labels, None);
    };
    labels.insert(QUEUE_LABEL.to_owned(), queue.clone());
    let annotations = (pods_at_once(sj, req) > 1)
        .then(|| BTreeMap::from([(MIN_PARALLELISM_ANNOTATION.to_owned(), "1".to_owned())]));
    (labels, annotations)
}

/// The Job for one step of one run, owned by the ScanJob. It never sets `suspend`: a queue
/// (Kueue) that manages the Job owns it, suspending the Job until it is admitted and again to
/// preempt it.
pub fn job(sj: &ScanJob, req: &JobRequest, defaults: &WorkerDefaults) -> Job {
    let name = sj.metadata.name.clone().unwrap_or_default();
    let spec = &sj.spec;
    let template = pod_template(sj, req, defaults);
    let mut job_spec = JobSpec {
        template,
        pod_failure_policy: Some(pod_failure_policy(req.step)),
        ..JobSpec::default()
    };
    match req.step {
        Step::Scan => {
            job_spec.completion_mode = Some("Indexed".into());
            job_spec.completions = Some(req.shards);
            job_spec.parallelism = Some(pods_at_once(sj, req));
            job_spec.backoff_limit_per_index = Some(spec.backoff_limit_per_shard);
            job_spec.max_failed_indexes = Some(spec.max_failed_shards);
        }
        Step::Hash | Step::Join => {
            job_spec.completion_mode = Some("Indexed".into());
            job_spec.completions = Some(req.shards);
            job_spec.parallelism = Some(pods_at_once(sj, req));
            job_spec.backoff_limit_per_index = Some(spec.backoff_limit_per_shard);
        }
        Step::Plan | Step::Merge => {
            job_spec.backoff_limit = Some(spec.backoff_limit_per_shard);
        }
    }
    let (labels, annotations) = job_metadata(sj, req);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, &req.run, req.step)),
            namespace: sj.metadata.namespace.clone(),
            labels: Some(labels),
            annotations,
            owner_references: sj.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(job_spec),
        status: None,
    }
}
