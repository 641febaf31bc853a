//! The `ScanJob` resource (`scanjob.dev/v1alpha1`): what to scan, where to publish, how to shard
//! and when to run. Doc comments here become `kubectl explain` text; validation lives in the
//! schema (OpenAPI bounds and CEL rules) so a bad spec is refused at `kubectl apply`, naming the
//! field, instead of failing later in reconcile.
//!
//! docs/design.md §2 maps the resource and its rules. The source volume is one of the six ways
//! a shared file system is mounted (nfs, persistentVolumeClaim, hostPath, cephfs, csi,
//! azureFile), not any VolumeSource. `source` also takes `projectLevel`, `maxOpsPerSecond` and
//! `latencyGuardMilliseconds`; `output.volume` mounts a `file://` output; `worker` takes
//! `serviceAccountName`, `securityContext` and `activeDeadlineSeconds` beside image, threads,
//! resources and scheduling. The status has `lastRun` (how the newest run ended),
//! `concurrentRuns` (concurrencyPolicy Allow), `lastSkippedSchedule`, `lastRunNow`, the run's
//! `trigger` and `stage`, and `shards` ("done/total") for the printer column.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    Affinity, AzureFileVolumeSource, CSIVolumeSource, CephFSVolumeSource, HostPathVolumeSource,
    LocalObjectReference, NFSVolumeSource, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    ResourceRequirements, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Label on every child Job (and so its pods): the ScanJob's name.
pub const NAME_LABEL: &str = "scanjob.dev/name";
/// Label on every child Job (and so its pods): the run id.
pub const RUN_LABEL: &str = "scanjob.dev/run";
/// Label on every child Job: which step of the run it is (plan, scan, merge).
pub const STEP_LABEL: &str = "scanjob.dev/step";
/// Label on every child Job of a ScanJob with `queueName`: the Kueue LocalQueue that admits it.
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Annotation on a queued Job of several pods: the queue may admit it with as few as this many
/// (Kueue's partial admission); its Indexed completions then go through the pods admitted.
pub const MIN_PARALLELISM_ANNOTATION: &str = "kueue.x-k8s.io/job-min-parallelism";
/// Any new value of this annotation starts a run now.
pub const RUN_NOW_ANNOTATION: &str = "scanjob.dev/run-now";
pub use scanjob_contract::args::ALLOW_SHRINK_ANNOTATION;

/// Longest ScanJob name: child Jobs are named `<name>-<run id>-<step>`, their pods add an index
/// and a random suffix, and all of it must stay a 63-character label value.
pub const MAX_NAME_LEN: usize = 40;

/// A nightly (or one-off) table of contents of a shared file system, published as Delta tables
/// of Parquet files on object storage. Each run is five steps, each a Job: plan, an Indexed scan
/// with one completion per shard, an Indexed hash that confirms duplicates by content (only
/// with duplicates.hashBytesPerNight), an Indexed join that shares the merge's joins (only with
/// mergePods above 1), and the merge that publishes the night.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "scanjob.dev",
    version = "v1alpha1",
    kind = "ScanJob",
    namespaced,
    shortname = "sj",
    status = "ScanJobStatus",
    doc = "A ScanJob publishes a table of contents of a shared file system (one Parquet row per file) to object storage, once or on a schedule.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Shards", type_ = "string", description = "shards done/total of the current or last run", json_path = ".status.shards"),
    printcolumn(name = "Files", type_ = "integer", description = "files in the last published snapshot", json_path = ".status.lastSuccessfulRun.files"),
    printcolumn(name = "Size", type_ = "string", description = "bytes in files of the last published snapshot", json_path = ".status.lastSuccessfulRun.size"),
    printcolumn(name = "Last run", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Next run", type_ = "date", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40").message("metadata.name: must be at most 40 characters (child Job names add a run id and a step)"),
)]
#[x_kube(validation = Rule::new("self.maxFailedShards < self.shards").message("spec.maxFailedShards must be less than spec.shards").field_path(".maxFailedShards"))]
#[x_kube(validation = Rule::new("self.parallelism <= self.shards || self.parallelism == 1").message("spec.parallelism must not exceed spec.shards").field_path(".parallelism"))]
#[x_kube(validation = Rule::new("!has(self.source.nfs) || !has(self.source.nfs.reservedPort) || !self.source.nfs.reservedPort || !has(self.worker) || !has(self.worker.hostNetwork) || !self.worker.hostNetwork || (has(self.worker.runAsUser) && self.worker.runAsUser == 0)").message("spec.source.nfs.reservedPort with spec.worker.hostNetwork needs spec.worker.runAsUser: 0 (a capability reaches only uid 0; in the pod's own network namespace no capability is needed)").field_path(".source.nfs.reservedPort"))]
#[x_kube(validation = Rule::new("!has(self.timeZone) || has(self.schedule)").message("spec.timeZone needs spec.schedule").field_path(".timeZone"))]
#[x_kube(validation = Rule::new("!has(self.startingDeadlineSeconds) || has(self.schedule)").message("spec.startingDeadlineSeconds needs spec.schedule").field_path(".startingDeadlineSeconds"))]
#[serde(rename_all = "camelCase")]
pub struct ScanJobSpec {
    /// What to scan: a volume and an optional root inside it, or an NFS export read directly.
    pub source: Source,
    /// Where the table of contents is published.
    pub output: Output,
    /// How many shards the planner balances the tree into: the scan Job's completions.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100000))]
    pub shards: i32,
    /// How many shard pods run at once.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 10000))]
    pub parallelism: i32,
    /// Merge pods sharing a night's big joins (the first_seen join and the diff's, over the rows
    /// whose path hashes to each): with more than 1, an Indexed join Job of this many pods runs
    /// before the one merge pod, which derives everything else from their output and publishes
    /// the night at once. A night with no previous snapshot has nothing to join.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub merge_pods: i32,
    /// How worker pods run.
    #[serde(default)]
    pub worker: Worker,
    /// The Kueue LocalQueue (in the ScanJob's namespace) that admits the run's Jobs: each Job
    /// carries the label `kueue.x-k8s.io/queue-name` and waits, suspended by the queue, until
    /// its quota admits it; the queue may suspend it again to preempt it. The scan, hash and
    /// join Jobs may be admitted with fewer pods than their parallelism. Without it, Jobs run at
    /// once.
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("spec.queueName must name a LocalQueue: lowercase letters, digits and '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 1, max = 63))]
    pub queue_name: Option<String>,
    /// Five-field cron schedule (minute hour day-of-month month day-of-week) or a macro such as
    /// `@daily`. Without a schedule the ScanJob runs once.
    #[x_kube(validation = Rule::new(r"self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(?i:([0-9*?/,#LW-]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)+( +([0-9*?/,#LW-]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)+){4}))$')").message("spec.schedule must be a five-field cron expression such as '0 1 * * *' or a macro such as '@daily'"))]
    #[schemars(length(max = 128))]
    pub schedule: Option<String>,
    /// IANA time zone of the schedule, e.g. `Europe/Berlin`; default UTC. An unknown zone sets
    /// the Degraded condition and no run starts.
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z][A-Za-z0-9_+/-]*$')").message("spec.timeZone must be an IANA time zone name such as 'Europe/Berlin'"))]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// What to do when a run is due while another is active: Allow, Forbid (skip the new run) or
    /// Replace (stop the active run, start the new one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A scheduled run that could not start within this many seconds of its time is skipped.
    /// Only the most recent missed time is ever considered, however long the operator was away.
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Start no new scheduled runs; active runs go on.
    #[serde(default)]
    pub suspend: bool,
    /// Retries of one shard's pod before the shard counts as failed.
    #[serde(default = "three")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit_per_shard: i32,
    /// Shards allowed to fail in a run that still publishes; the snapshot then names the missing
    /// shards. 0: any failed shard fails the run and nothing is published.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_failed_shards: i32,
    /// A night whose file count or bytes fell by more than this many percent against the
    /// previous snapshot is not published: the run fails with reason MergeFailed and a message
    /// saying how much fell (an unmounted volume reads as an empty directory, a mount lost
    /// mid-scan as a tree cut short). When the store really shrank, give the annotation
    /// `scanjob.dev/allow-shrink` a new value: the next run publishes whatever it finds. 100
    /// turns the guard off.
    #[serde(default = "fifty")]
    #[schemars(range(min = 1, max = 100))]
    pub max_shrink_percent: i32,
    /// Succeeded runs whose Jobs are kept; older ones are deleted (published snapshots stay).
    #[serde(default = "three")]
    #[schemars(range(min = 0))]
    pub successful_runs_history_limit: i32,
    /// Failed runs whose Jobs are kept for inspection; older ones are deleted.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub failed_runs_history_limit: i32,
    /// Duplicate files: which are candidates, and how much content may be read each night to
    /// confirm them.
    #[serde(default)]
    pub duplicates: Duplicates,
    /// A ConfigMap naming the file system's users and groups, so the report shows owners by
    /// name (by number otherwise).
    pub owner_names: Option<OwnerNames>,
}

/// Keys of a ConfigMap holding the file system's `/etc/passwd` and `/etc/group` (their
/// formats), mounted into the merge pod. The ConfigMap and the keys named must exist: the merge
/// pod does not start without them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.passwdKey) || has(self.groupKey)").message("spec.ownerNames needs passwdKey, groupKey or both"))]
pub struct OwnerNames {
    /// The ConfigMap, in the ScanJob's namespace.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.ownerNames.configMapName must name a ConfigMap"))]
    #[schemars(length(max = 253))]
    pub config_map_name: String,
    /// Its key holding a passwd-format file (`name:x:uid:gid:…`).
    #[schemars(length(min = 1, max = 253))]
    pub passwd_key: Option<String>,
    /// Its key holding a group-format file (`name:x:gid:members`).
    #[schemars(length(min = 1, max = 253))]
    pub group_key: Option<String>,
}

/// Duplicate files are found from metadata (same size and name, or same size and mtime) and
/// confirmed from content by hash pods between the scan and the merge: first a SHA-256 of a few
/// sampled blocks, then of the whole file for groups whose samples match, within a byte budget,
/// largest waste first. A file's hashes are kept while its dev, inode, size, mtime and ctime do
/// not change, so an unchanged file is read once, ever. Files are opened with O_NOATIME; a file
/// where that is refused (not owned by the pod's uid, without `readAllFiles`) is not read, so
/// atimes never move.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Duplicates {
    /// Files smaller than this many bytes are not duplicate candidates.
    #[serde(default = "mebibyte")]
    #[schemars(range(min = 1))]
    pub min_size: i64,
    /// Bytes of file content the hash pods may read in one night, all together. 0 (the
    /// default) reads no file: every group stays a candidate, and no hash Job runs.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub hash_bytes_per_night: i64,
    /// Hash pods: an Indexed Job whose pods each take the candidate groups of their share of
    /// file sizes, with an even share of the bytes and of `source.maxOpsPerSecond`.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub hash_pods: i32,
}

impl Default for Duplicates {
    fn default() -> Self {
        Self {
            min_size: mebibyte(),
            hash_bytes_per_night: 0,
            hash_pods: 1,
        }
    }
}

fn mebibyte() -> i64 {
    1 << 20
}

fn one() -> i32 {
    1
}

fn three() -> i32 {
    3
}

fn fifty() -> i32 {
    50
}

/// The file system to scan: a volume the pods mount, or an NFS export the pods read with their
/// own NFSv3 client (no mount, no privilege).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.volume) != has(self.nfs)").message("spec.source: exactly one of volume and nfs must be set"))]
#[x_kube(validation = Rule::new("!has(self.nfs) || !has(self.subPath)").message("spec.source.subPath applies to a volume; with spec.source.nfs, name the directory in nfs.export").field_path(".subPath"))]
#[x_kube(validation = Rule::new("!has(self.nfs) || !self.oneFileSystem").message("spec.source.oneFileSystem applies to a volume: an NFS export is one file system").field_path(".oneFileSystem"))]
pub struct Source {
    /// The volume holding the file system; mounted read-only into plan and scan pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<SourceVolume>,
    /// An NFSv3 export that plan, scan and hash pods read directly (READDIRPLUS, many calls in
    /// flight) as the uid and gid named here, with no volume and no mount. One shard scans
    /// the whole export. Refused unless the operator's allow-list (the chart's
    /// `nfs.allowed`) names this namespace, server, export and identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsSource>,
    /// Directory inside the volume to scan, relative; default the volume's root.
    #[x_kube(validation = Rule::new(r"!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')").message("spec.source.subPath must be a relative path without '..'"))]
    #[schemars(length(max = 1024))]
    pub sub_path: Option<String>,
    /// Names (globs, e.g. `.snapshot`) pruned from the walk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(g, size(g) > 0)").message("spec.source.exclude must not contain empty globs"))]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub exclude: Vec<String>,
    /// Do not descend into other file systems mounted below the root.
    #[serde(default)]
    pub one_file_system: bool,
    /// File-system operations per second (stats, directory reads, directory opens, an open
    /// counting three: lookup, open, close) that a run may make, shared by its pods: each of the
    /// `parallelism` scan pods takes an equal share, the plan pod (alone) all of it. Unlimited
    /// when absent.
    #[schemars(range(min = 1))]
    pub max_ops_per_second: Option<i64>,
    /// Back off (halve the operations in flight, then add one back per good second) while the
    /// observed p99 stat latency is above this many milliseconds. Off when absent.
    #[schemars(range(min = 1, max = 600000))]
    pub latency_guard_milliseconds: Option<i64>,
    /// Path level whose component becomes the `project` column (1 = top-level directory);
    /// 0 for none.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 64))]
    pub project_level: i32,
}

/// An NFSv3 export read by the pods' own client (AUTH_SYS).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NfsSource {
    /// The server: a host name or an IP address.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9.:-]+$')").message("spec.source.nfs.server must be a host name or an IP address"))]
    #[schemars(length(min = 1, max = 253))]
    pub server: String,
    /// Further addresses of the same server, e.g. the nodes of a cluster that serve one
    /// namespace: each pod spreads its connections over `server` and these (MOUNT goes to
    /// `server`). The admin's grants must name each, like `server`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 253), pattern(r"^[A-Za-z0-9.:-]+$"))
    )]
    pub addresses: Vec<String>,
    /// The export's path as the server names it for MOUNT, e.g. `/ifs/data`.
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')").message("spec.source.nfs.export must be an absolute path without '..'"))]
    #[schemars(length(min = 1, max = 1024))]
    pub export: String,
    /// The server's portmapper port, asked for the MOUNT and NFS ports.
    #[serde(default = "portmapper_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The uid the pods' calls carry (AUTH_SYS); the export's squash rules apply. Default
    /// 65534 (nobody): only what everyone may read is read.
    #[serde(default = "nobody")]
    #[schemars(range(min = 0, max = 4294967295i64))]
    pub uid: i64,
    /// The gid the pods' calls carry. Default 65534 (nogroup).
    #[serde(default = "nobody")]
    #[schemars(range(min = 0, max = 4294967295i64))]
    pub gid: i64,
    /// Connect from a port below 1024, for an export that insists (`secure`). Off by default,
    /// and only where the admin's grant allows it. In a pod's own network namespace the pods
    /// lower `net.ipv4.ip_unprivileged_port_start` to 512 and hold no capability; with
    /// `worker.hostNetwork` they need `worker.runAsUser: 0` and add `NET_BIND_SERVICE`.
    #[serde(default)]
    pub reserved_port: bool,
}

fn portmapper_port() -> i32 {
    111
}

fn nobody() -> i64 {
    65534
}

impl NfsSource {
    /// The worker's root for this export: `nfs://SERVER[:PORT]/EXPORT`.
    pub fn root(&self) -> String {
        let server = if self.server.contains(':') {
            format!("[{}]", self.server)
        } else {
            self.server.clone()
        };
        let port = if self.port == 111 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("nfs://{server}{port}{}", self.export)
    }
}

/// Exactly one of the volume sources a shared file system is reached through.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.nfs) ? 1 : 0) + (has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.hostPath) ? 1 : 0) + (has(self.cephfs) ? 1 : 0) + (has(self.csi) ? 1 : 0) + (has(self.azureFile) ? 1 : 0) == 1").message("exactly one volume source must be set: nfs, persistentVolumeClaim, hostPath, cephfs, csi or azureFile"))]
pub struct SourceVolume {
    /// An NFS export, e.g. `{server: isilon.example.com, path: /ifs/data}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NFSVolumeSource>,
    /// A PersistentVolumeClaim in the ScanJob's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// A directory on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    /// A CephFS mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cephfs: Option<CephFSVolumeSource>,
    /// A CSI driver's volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi: Option<CSIVolumeSource>,
    /// An Azure Files share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_file: Option<AzureFileVolumeSource>,
}

impl SourceVolume {
    /// The pod volume named `name` with this source.
    pub fn to_volume(&self, name: &str) -> Volume {
        Volume {
            name: name.to_owned(),
            nfs: self.nfs.clone(),
            persistent_volume_claim: self.persistent_volume_claim.clone(),
            host_path: self.host_path.clone(),
            cephfs: self.cephfs.clone(),
            csi: self.csi.clone(),
            azure_file: self.azure_file.clone(),
            ..Volume::default()
        }
    }
}

/// Where snapshots are published.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.url.startsWith('file://') || has(self.volume)").message("spec.output.volume is required for a file:// url: pods need the directory mounted").field_path(".volume"))]
pub struct Output {
    /// Object store URL of the table of contents: `s3://bucket/prefix`, `gs://…`, `az://…`, or
    /// `file:///path` on a volume shared by all pods (see `volume`).
    #[x_kube(validation = Rule::new(r"self.matches('^(s3|gs|az|file)://[^/]+.*$') || self.matches('^file:///.+$')").message("spec.output.url must start with s3://, gs://, az:// or file:// and name a bucket or path"))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Secret whose keys become environment variables of every pod (AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_…).
    #[x_kube(validation = Rule::new("has(self.name) && size(self.name) > 0").message("spec.output.secretRef.name must name a Secret"))]
    pub secret_ref: Option<LocalObjectReference>,
    /// For `file://` urls: the shared volume mounted read-write at the url's path.
    pub volume: Option<SourceVolume>,
    /// After each published snapshot, keep only this many newest snapshots (and their runs'
    /// shard files); the one `latest.json` names is never removed. All are kept when absent.
    #[schemars(range(min = 1, max = 100000))]
    pub keep_snapshots: Option<i64>,
}

/// How the worker pods of a run are placed and sized.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.readAllFiles) || !self.readAllFiles || (has(self.runAsUser) && self.runAsUser == 0)").message("spec.worker.readAllFiles needs spec.worker.runAsUser: 0 (Linux drops added capabilities when a process of another uid starts under no-new-privileges)").field_path(".readAllFiles"))]
pub struct Worker {
    /// Worker image; default: the operator's `--worker-image`.
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.worker.image must not be empty"))]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    /// Walker threads per scan pod; default: the worker's own choice.
    #[schemars(range(min = 1, max = 4096))]
    pub threads: Option<i32>,
    /// Resources of every worker container, replacing each step's default (see
    /// `stepResources`, which wins over this for its step).
    pub resources: Option<ResourceRequirements>,
    /// Resources per step, each replacing that step's default and `resources`. Defaults, from
    /// the steps' measured peaks: plan and scan and hash request 250m CPU and 256Mi; join and
    /// merge request 500m CPU and 1536Mi with a 4Gi memory limit, half of which is their
    /// query engine's memory pool.
    #[serde(default)]
    pub step_resources: StepResources,
    /// Node labels a worker pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Node affinity, pod affinity and pod anti-affinity of worker pods.
    pub affinity: Option<Affinity>,
    /// Taints worker pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of worker pods: the scheduler's preemption order, and the priority a queue
    /// (Kueue) admits and preempts the run's Jobs by.
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.worker.priorityClassName must name a PriorityClass (a DNS subdomain)"))]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Labels added to every worker pod, e.g. for cost attribution or network policies. The
    /// operator's own labels (`scanjob.dev/…`, `app.kubernetes.io/name` and `managed-by`) win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('scanjob.dev/'))").message("spec.worker.podLabels must not set scanjob.dev/ labels: the operator sets them"))]
    #[x_kube(validation = Rule::new(r"self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))").message("spec.worker.podLabels values must be label values: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"))]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    pub pod_labels: BTreeMap<String, String>,
    /// Annotations added to every worker pod, e.g. for a policy engine or a sidecar injector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub pod_annotations: BTreeMap<String, String>,
    /// ServiceAccount of worker pods (no API token is mounted); default: the operator's
    /// `--worker-service-account`.
    pub service_account_name: Option<String>,
    /// Pod security context, replacing the default (non-root uid 65532, RuntimeDefault seccomp).
    /// Set `runAsUser` to an identity that may read the whole tree.
    pub security_context: Option<PodSecurityContext>,
    /// Seconds a scan pod may run before it is stopped and retried.
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// The uid worker pods run as, over the default (65532) or `securityContext`'s. A uid that
    /// owns the whole tree, or 0 with `readAllFiles`, reads every entry; other uids get an error
    /// row for each directory they may not read.
    #[schemars(range(min = 0, max = 2147483647))]
    pub run_as_user: Option<i64>,
    /// Add the one capability that reads every file and directory whatever its permissions,
    /// CAP_DAC_READ_SEARCH, to the worker containers (every other capability stays dropped; the
    /// root file system stays read-only). Needs `runAsUser: 0`.
    #[serde(default)]
    pub read_all_files: bool,
    /// Run worker pods in the node's network namespace (`hostNetwork`), for an object store
    /// reached only from the node itself.
    #[serde(default)]
    pub host_network: bool,
    /// Size limit of the scratch volume (an emptyDir at /tmp) where the merge spills sorts and
    /// aggregates that exceed its memory pool; default: no limit.
    pub scratch_size_limit: Option<Quantity>,
}

/// Resources of each step's worker container; a step left out gets its default.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepResources {
    /// The plan pod. Measured: 27 MiB on a first night, 187 MiB planning from a previous
    /// snapshot of 509,554 directories (it grows with directories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ResourceRequirements>,
    /// Each scan pod. Measured: at most 145 MiB per shard at 16 M files (it grows with the
    /// biggest directory, not with files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ResourceRequirements>,
    /// Each hash pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<ResourceRequirements>,
    /// Each join pod. Measured: 1.0-1.1 GiB at 16 M rows; its memory pool is half the memory
    /// limit (2 GiB without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<ResourceRequirements>,
    /// The merge pod. Measured: 1.2 GiB with history at 16 M rows; its memory pool is half the
    /// memory limit (2 GiB without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<ResourceRequirements>,
}

/// What to do with a due run while another run is active.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// The due run is skipped.
    #[default]
    Forbid,
    /// The active run is stopped and the due run starts.
    Replace,
}

/// What the operator observed and did, per the API conventions: conditions for machines, a
/// phase for humans.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScanJobStatus {
    /// The generation of the spec this status describes.
    pub observed_generation: Option<i64>,
    /// Ready (a snapshot is published), Progressing (a run is active), Degraded (the last run
    /// failed or the spec cannot be scheduled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Idle, Planning, Scanning, Merging, Succeeded or Failed.
    pub phase: Option<Phase>,
    /// Shards done/total of the current (or last) run.
    pub shards: Option<String>,
    /// The newest active run.
    pub current_run: Option<RunStatus>,
    /// Older runs still active (concurrencyPolicy Allow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrent_runs: Vec<RunStatus>,
    /// How the newest finished run ended.
    pub last_run: Option<FinishedRun>,
    /// The newest run that published a snapshot.
    pub last_successful_run: Option<SuccessfulRun>,
    /// When the next scheduled run is due.
    pub next_schedule_time: Option<Time>,
    /// The scheduled time of the newest run started.
    pub last_schedule_time: Option<Time>,
    /// The newest due time that was not run, and why.
    pub last_skipped_schedule: Option<SkippedSchedule>,
    /// The value of the `scanjob.dev/run-now` annotation last acted on.
    pub last_run_now: Option<String>,
    /// The value of the `scanjob.dev/allow-shrink` annotation last acted on.
    pub last_allow_shrink: Option<String>,
}

/// The derived, human-facing state.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Planning,
    Scanning,
    Merging,
    Succeeded,
    Failed,
}

/// Where an active run is.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum Stage {
    /// Recorded; its plan Job is created next.
    Pending,
    Planning,
    Scanning,
    /// Reading duplicate candidates' contents (only with `duplicates.hashBytesPerNight`).
    Hashing,
    /// The merge's joins in `mergePods` partitions (only with more than one).
    Joining,
    Merging,
}

/// What started a run.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// No schedule: the ScanJob's one run.
    Once,
    Schedule,
    /// The `scanjob.dev/run-now` annotation.
    RunNow,
}

/// An active run. Recorded before its first Job is created, so a restarted operator continues it
/// and never starts a finished run again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The run id, from its scheduled time (e.g. `20261123t010000z`); names its Jobs and its
    /// prefix in the object store.
    pub id: String,
    pub trigger: Trigger,
    pub scheduled_time: Time,
    pub start_time: Time,
    /// The step whose Job was created last.
    pub stage: Stage,
    pub shards: ShardCounts,
    /// Indexes of failed shards, as the Job reports them ("1,3-4").
    pub failed_indexes: Option<String>,
    /// Started under a new `scanjob.dev/allow-shrink` value: its merge publishes however much
    /// the store shrank.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_shrink: bool,
    /// Why the current step is not running, while it is not: its Job waits for admission by
    /// its queue, was preempted, or its pods cannot be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The current step's Job has run since the queue admitted it, so a suspension now is a
    /// preemption (only with `queueName`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admitted: bool,
    /// Times the queue suspended a Job of this run after admitting it. A preempted step's pods
    /// are stopped without counting as failures; its Job goes on where it was once admitted
    /// again (an Indexed Job keeps its completed shards).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preemptions: i32,
}

/// Why an active run's current step is not running.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    /// AwaitingAdmission, Preempted or Unschedulable.
    pub reason: WaitingReason,
    /// For humans: which Job or pods wait, on which queue, and the scheduler's words.
    pub message: String,
    /// When the step began to wait for this reason.
    pub since: Time,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitingReason {
    /// The step's Job is suspended until its queue admits it.
    AwaitingAdmission,
    /// The queue suspended the step's Job after admitting it (to admit work of a higher
    /// priority); it waits for admission again.
    Preempted,
    /// Pods of the step cannot be placed on any node (resources, nodeSelector, affinity,
    /// taints).
    Unschedulable,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Shards of a run by state.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardCounts {
    pub total: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub active: i32,
}

/// How a run ended.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FinishedRun {
    pub id: String,
    pub outcome: Outcome,
    pub start_time: Time,
    pub completion_time: Time,
    /// A CamelCase reason, e.g. ShardsFailed, PlanFailed, Replaced.
    pub reason: String,
    pub message: String,
    pub shards: ShardCounts,
    /// Times the queue preempted the run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preemptions: i32,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// A published snapshot, as the merge pod reported it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SuccessfulRun {
    pub id: String,
    pub completion_time: Time,
    pub files: i64,
    pub directories: i64,
    pub bytes: i64,
    /// `bytes` for humans, e.g. `1.4 TiB`.
    pub size: String,
    pub errors: i64,
    /// URL of the snapshot's manifest.
    pub snapshot: String,
    /// Shards that failed and are missing from this snapshot (maxFailedShards > 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_shards: Vec<i64>,
}

/// A due time that did not start a run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SkippedSchedule {
    pub time: Time,
    /// MissedStartingDeadline or ConcurrentRunActive.
    pub reason: String,
}

/// The CRD as YAML, as checked in at `crds/scanjob.yaml`.
pub fn crd_yaml() -> anyhow::Result<String> {
    use kube::CustomResourceExt;
    let yaml = serde_saphyr::to_string(&ScanJob::crd())?;
    Ok(format!(
        "# Generated by `cargo run --bin crdgen`; do not edit.\n---\n{yaml}"
    ))
}

/// A time of the status, as Kubernetes stores it (whole seconds).
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

/// A time of the status as a `chrono` time.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), 0).unwrap_or_default()
}
