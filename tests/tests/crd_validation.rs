//! The ScanJob CRD's schema (OpenAPI bounds, enums, required fields) and CEL rules, against the
//! real kube-apiserver: every kind of bad spec is refused at `kubectl apply`, the message names
//! the field and says what is wrong, and nothing is created. A valid ScanJob is accepted, so the
//! rules are not simply refusing everything. No operator and no kubelet: this is the API alone.

use scanjob_e2e::cluster::TestNamespace;
use scanjob_e2e::operator::{S3_SECRET, install_crd, kubectl, kubectl_apply};

const URL: &str = "s3://scanjob-test/crd-validation/toc";
const NFS: &str = "nfs: {server: nfs.example.com, path: /export}";
const HOST_PATH: &str = "hostPath: {path: /data, type: Directory}";
/// An export read by the pods' own NFS client (`source.nfs`, not a volume).
const NFS_EXPORT: &str =
    "nfs: {server: filer1.example.com, export: /ifs/data, uid: 1000, gid: 1000}";

/// One ScanJob YAML that must be refused, and what kubectl's output must contain.
struct Case {
    what: &'static str,
    /// The ScanJob's `metadata.name`: must not exist afterwards.
    name: String,
    yaml: String,
    expect: Vec<&'static str>,
}

/// A ScanJob over the hostPath `/data` publishing to [`URL`], with more spec YAML `extra`
/// (indented by two spaces).
fn with_spec(name: &str, extra: &str) -> String {
    with_parts(
        name,
        "    volume:\n      hostPath: {path: '/data', type: Directory}\n",
        &format!("    url: {URL}\n    secretRef: {{name: {S3_SECRET}}}\n"),
        extra,
    )
}

/// A ScanJob with its own `source` and `output` bodies (each indented by four spaces) and more
/// spec YAML `extra`.
fn with_parts(name: &str, source: &str, output: &str, extra: &str) -> String {
    format!(
        "apiVersion: scanjob.dev/v1alpha1\nkind: ScanJob\nmetadata:\n  name: {name}\nspec:\n  source:\n{source}  output:\n{output}{extra}"
    )
}

fn case(what: &'static str, name: &str, yaml: String, expect: &[&'static str]) -> Case {
    Case {
        what,
        name: name.to_owned(),
        yaml,
        expect: expect.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    let nfs_source = format!("    volume:\n      {NFS}\n");
    let s3_output = format!("    url: {URL}\n");
    let long_name = "a-scanjob-named-with-forty-one-characters";
    assert_eq!(long_name.len(), 41);
    vec![
        case(
            "shards 0",
            "shards-zero",
            with_spec("shards-zero", "  shards: 0\n"),
            &[
                "spec.shards: Invalid value: 0",
                "spec.shards in body should be greater than or equal to 1",
            ],
        ),
        case(
            "shards above the maximum",
            "shards-huge",
            with_spec("shards-huge", "  shards: 100001\n"),
            &[
                "spec.shards: Invalid value: 100001",
                "should be less than or equal to 100000",
            ],
        ),
        case(
            "keepSnapshots 0",
            "keep-snapshots-zero",
            with_parts(
                "keep-snapshots-zero",
                &nfs_source,
                &format!("{s3_output}    keepSnapshots: 0\n"),
                "",
            ),
            &[
                "spec.output.keepSnapshots: Invalid value: 0",
                "spec.output.keepSnapshots in body should be greater than or equal to 1",
            ],
        ),
        case(
            "parallelism 0",
            "parallelism-zero",
            with_spec("parallelism-zero", "  parallelism: 0\n"),
            &[
                "spec.parallelism: Invalid value: 0",
                "spec.parallelism in body should be greater than or equal to 1",
            ],
        ),
        case(
            "parallelism above shards",
            "parallelism-above-shards",
            with_spec(
                "parallelism-above-shards",
                "  shards: 2\n  parallelism: 3\n",
            ),
            &[
                "spec.parallelism: Invalid value",
                "spec.parallelism must not exceed spec.shards",
            ],
        ),
        case(
            "maxFailedShards equal to shards",
            "max-failed-equal",
            with_spec("max-failed-equal", "  shards: 2\n  maxFailedShards: 2\n"),
            &[
                "spec.maxFailedShards: Invalid value",
                "spec.maxFailedShards must be less than spec.shards",
            ],
        ),
        case(
            "maxFailedShards above the default of one shard",
            "max-failed-default-shards",
            with_spec("max-failed-default-shards", "  maxFailedShards: 1\n"),
            &[
                "spec.maxFailedShards: Invalid value",
                "spec.maxFailedShards must be less than spec.shards",
            ],
        ),
        case(
            "schedule with four fields",
            "schedule-four-fields",
            with_spec("schedule-four-fields", "  schedule: '0 1 * *'\n"),
            &[
                "spec.schedule: Invalid value: \"0 1 * *\"",
                "spec.schedule must be a five-field cron expression",
            ],
        ),
        case(
            "schedule in words",
            "schedule-words",
            with_spec("schedule-words", "  schedule: every night\n"),
            &[
                "spec.schedule: Invalid value: \"every night\"",
                "spec.schedule must be a five-field cron expression",
            ],
        ),
        case(
            "schedule of five words",
            "schedule-five-words",
            with_spec("schedule-five-words", "  schedule: every night at one am\n"),
            &[
                "spec.schedule: Invalid value: \"every night at one am\"",
                "spec.schedule must be a five-field cron expression",
            ],
        ),
        case(
            "output url with scheme ftp://",
            "url-ftp",
            with_parts(
                "url-ftp",
                &nfs_source,
                "    url: ftp://files.example.com/toc\n",
                "",
            ),
            &[
                "spec.output.url: Invalid value: \"ftp://files.example.com/toc\"",
                "spec.output.url must start with s3://, gs://, az:// or file://",
            ],
        ),
        case(
            "output url without a bucket",
            "url-no-bucket",
            with_parts("url-no-bucket", &nfs_source, "    url: s3://\n", ""),
            &[
                "spec.output.url: Invalid value: \"s3://\"",
                "spec.output.url must start with s3://, gs://, az:// or file://",
            ],
        ),
        case(
            "output url missing",
            "url-missing",
            with_parts(
                "url-missing",
                &nfs_source,
                "    secretRef: {name: toc-s3}\n",
                "",
            ),
            &["spec.output.url: Required value"],
        ),
        case(
            "file:// url without output.volume",
            "file-url-no-volume",
            with_parts(
                "file-url-no-volume",
                &nfs_source,
                "    url: file:///srv/toc\n",
                "",
            ),
            &[
                "spec.output.volume: Invalid value",
                "spec.output.volume is required for a file:// url",
            ],
        ),
        case(
            "output secretRef without a name",
            "secret-ref-empty",
            with_parts(
                "secret-ref-empty",
                &nfs_source,
                &format!("{s3_output}    secretRef: {{}}\n"),
                "",
            ),
            &["spec.output.secretRef.name: Required value"],
        ),
        case(
            "source volume with two sources (nfs and hostPath)",
            "volume-two-sources",
            with_parts(
                "volume-two-sources",
                &format!("    volume:\n      {NFS}\n      {HOST_PATH}\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.volume: Invalid value",
                "exactly one volume source must be set: nfs, persistentVolumeClaim, hostPath, cephfs, csi or azureFile",
            ],
        ),
        case(
            "source with both a volume and an NFS export",
            "source-volume-and-nfs",
            with_parts(
                "source-volume-and-nfs",
                &format!("    volume:\n      {NFS}\n    {NFS_EXPORT}\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source: Invalid value",
                "spec.source: exactly one of volume and nfs must be set",
            ],
        ),
        case(
            "source with neither a volume nor an NFS export",
            "source-none",
            with_parts("source-none", "    exclude: [tmp]\n", &s3_output, ""),
            &["spec.source: exactly one of volume and nfs must be set"],
        ),
        case(
            "NFS export with a subPath",
            "nfs-sub-path",
            with_parts(
                "nfs-sub-path",
                &format!("    {NFS_EXPORT}\n    subPath: projects\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.subPath: Invalid value",
                "spec.source.subPath applies to a volume",
            ],
        ),
        case(
            "NFS export that is not an absolute path",
            "nfs-relative-export",
            with_parts(
                "nfs-relative-export",
                "    nfs: {server: filer1, export: ifs/data}\n",
                &s3_output,
                "",
            ),
            &["spec.source.nfs.export must be an absolute path without '..'"],
        ),
        case(
            "NFS reserved port on the node's network as a uid that holds no capability",
            "nfs-reserved-port-host-network",
            with_parts(
                "nfs-reserved-port-host-network",
                "    nfs: {server: filer1, export: /ifs/data, reservedPort: true}\n",
                &s3_output,
                "  worker: {hostNetwork: true}\n",
            ),
            &[
                "spec.source.nfs.reservedPort: Invalid value",
                "spec.source.nfs.reservedPort with spec.worker.hostNetwork needs spec.worker.runAsUser: 0",
            ],
        ),
        case(
            "NFS server address that is not a host name or an address",
            "nfs-bad-address",
            with_parts(
                "nfs-bad-address",
                "    nfs: {server: filer1, export: /ifs/data, addresses: ['filer 2']}\n",
                &s3_output,
                "",
            ),
            &[
                "spec.source.nfs.addresses[0]: Invalid value",
                "should match",
            ],
        ),
        case(
            "source volume with no source",
            "volume-no-source",
            with_parts("volume-no-source", "    volume: {}\n", &s3_output, ""),
            &[
                "spec.source.volume: Invalid value",
                "exactly one volume source must be set",
            ],
        ),
        case(
            "subPath escaping the volume with ..",
            "sub-path-dotdot",
            with_parts(
                "sub-path-dotdot",
                &format!("{nfs_source}    subPath: ../etc\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.subPath: Invalid value: \"../etc\"",
                "spec.source.subPath must be a relative path without '..'",
            ],
        ),
        case(
            "subPath with .. in the middle",
            "sub-path-inner-dotdot",
            with_parts(
                "sub-path-inner-dotdot",
                &format!("{nfs_source}    subPath: projects/../../etc\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.subPath: Invalid value: \"projects/../../etc\"",
                "spec.source.subPath must be a relative path without '..'",
            ],
        ),
        case(
            "subPath absolute",
            "sub-path-absolute",
            with_parts(
                "sub-path-absolute",
                &format!("{nfs_source}    subPath: /abs\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.subPath: Invalid value: \"/abs\"",
                "spec.source.subPath must be a relative path without '..'",
            ],
        ),
        case(
            "empty exclude glob",
            "exclude-empty-glob",
            with_parts(
                "exclude-empty-glob",
                &format!("{nfs_source}    exclude: ['.snapshot', '']\n"),
                &s3_output,
                "",
            ),
            &[
                "spec.source.exclude: Invalid value",
                "spec.source.exclude must not contain empty globs",
            ],
        ),
        case(
            "successfulRunsHistoryLimit -1",
            "successful-history-negative",
            with_spec(
                "successful-history-negative",
                "  successfulRunsHistoryLimit: -1\n",
            ),
            &[
                "spec.successfulRunsHistoryLimit: Invalid value: -1",
                "spec.successfulRunsHistoryLimit in body should be greater than or equal to 0",
            ],
        ),
        case(
            "failedRunsHistoryLimit -1",
            "failed-history-negative",
            with_spec("failed-history-negative", "  failedRunsHistoryLimit: -1\n"),
            &[
                "spec.failedRunsHistoryLimit: Invalid value: -1",
                "spec.failedRunsHistoryLimit in body should be greater than or equal to 0",
            ],
        ),
        case(
            "startingDeadlineSeconds -5",
            "deadline-negative",
            with_spec(
                "deadline-negative",
                "  schedule: '@daily'\n  startingDeadlineSeconds: -5\n",
            ),
            &[
                "spec.startingDeadlineSeconds: Invalid value: -5",
                "spec.startingDeadlineSeconds in body should be greater than or equal to 0",
            ],
        ),
        case(
            "startingDeadlineSeconds without schedule",
            "deadline-no-schedule",
            with_spec("deadline-no-schedule", "  startingDeadlineSeconds: 60\n"),
            &[
                "spec.startingDeadlineSeconds: Invalid value",
                "spec.startingDeadlineSeconds needs spec.schedule",
            ],
        ),
        case(
            "concurrencyPolicy Sometimes",
            "concurrency-sometimes",
            with_spec("concurrency-sometimes", "  concurrencyPolicy: Sometimes\n"),
            &[
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\"",
                "supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ],
        ),
        case(
            "timeZone without schedule",
            "time-zone-no-schedule",
            with_spec("time-zone-no-schedule", "  timeZone: Europe/Berlin\n"),
            &[
                "spec.timeZone: Invalid value",
                "spec.timeZone needs spec.schedule",
            ],
        ),
        case(
            "timeZone not an IANA name",
            "time-zone-malformed",
            with_spec(
                "time-zone-malformed",
                "  schedule: '@daily'\n  timeZone: Europe Berlin\n",
            ),
            &[
                "spec.timeZone: Invalid value: \"Europe Berlin\"",
                "spec.timeZone must be an IANA time zone name",
            ],
        ),
        case(
            "wrong type (shards: many)",
            "shards-string",
            with_spec("shards-string", "  shards: many\n"),
            &[
                "spec.shards: Invalid value: \"string\"",
                "spec.shards in body must be of type integer",
            ],
        ),
        case(
            "unknown field spec.shard (strict field validation)",
            "unknown-field",
            with_spec("unknown-field", "  shard: 3\n"),
            &["strict decoding error", "unknown field \"spec.shard\""],
        ),
        case(
            "worker.threads 0",
            "worker-threads-zero",
            with_spec("worker-threads-zero", "  worker:\n    threads: 0\n"),
            &[
                "spec.worker.threads: Invalid value: 0",
                "spec.worker.threads in body should be greater than or equal to 1",
            ],
        ),
        case(
            "worker.image empty",
            "worker-image-empty",
            with_spec("worker-image-empty", "  worker:\n    image: ''\n"),
            &[
                "spec.worker.image: Invalid value: \"\"",
                "spec.worker.image must not be empty",
            ],
        ),
        case(
            "queueName not a LocalQueue name",
            "queue-name-bad",
            with_spec("queue-name-bad", "  queueName: Nightly_Batch\n"),
            &[
                "spec.queueName: Invalid value",
                "spec.queueName must name a LocalQueue",
            ],
        ),
        case(
            "worker.podLabels setting the operator's own",
            "pod-labels-own",
            with_spec(
                "pod-labels-own",
                "  worker:\n    podLabels: {scanjob.dev/run: mine}\n",
            ),
            &[
                "spec.worker.podLabels: Invalid value",
                "spec.worker.podLabels must not set scanjob.dev/ labels",
            ],
        ),
        case(
            "worker.podLabels value not a label value",
            "pod-labels-value",
            with_spec(
                "pod-labels-value",
                "  worker:\n    podLabels: {team: 'storage team'}\n",
            ),
            &[
                "spec.worker.podLabels: Invalid value",
                "spec.worker.podLabels values must be label values",
            ],
        ),
        case(
            "worker.priorityClassName not a name",
            "priority-bad",
            with_spec(
                "priority-bad",
                "  worker:\n    priorityClassName: Batch Low\n",
            ),
            &[
                "spec.worker.priorityClassName: Invalid value",
                "spec.worker.priorityClassName must name a PriorityClass",
            ],
        ),
        case(
            "worker.readAllFiles without runAsUser 0",
            "read-all-nonroot",
            with_spec(
                "read-all-nonroot",
                "  worker:\n    runAsUser: 1000\n    readAllFiles: true\n",
            ),
            &[
                "spec.worker.readAllFiles",
                "spec.worker.readAllFiles needs spec.worker.runAsUser: 0",
            ],
        ),
        case(
            "worker.runAsUser negative",
            "run-as-negative",
            with_spec("run-as-negative", "  worker:\n    runAsUser: -1\n"),
            &["spec.worker.runAsUser in body should be greater than or equal to 0"],
        ),
        case(
            "ownerNames without a key",
            "owner-names-no-key",
            with_spec(
                "owner-names-no-key",
                "  ownerNames:\n    configMapName: users\n",
            ),
            &["spec.ownerNames needs passwdKey, groupKey or both"],
        ),
        case(
            "duplicates.hashPods zero",
            "hash-pods-zero",
            with_spec(
                "hash-pods-zero",
                "  duplicates:\n    hashBytesPerNight: 1000\n    hashPods: 0\n",
            ),
            &["spec.duplicates.hashPods in body should be greater than or equal to 1"],
        ),
        case(
            "mergePods zero",
            "merge-pods-zero",
            with_spec("merge-pods-zero", "  mergePods: 0\n"),
            &["spec.mergePods in body should be greater than or equal to 1"],
        ),
        case(
            "name longer than 40 characters",
            long_name,
            with_spec(long_name, ""),
            &["metadata.name: must be at most 40 characters"],
        ),
    ]
}

/// Whether ScanJob `name` exists in `ns` (kubectl's own answer, so a failure to ask is no).
fn exists(ns: &TestNamespace, name: &str) -> Result<bool, String> {
    let (ok, out) = kubectl(
        &[
            "get",
            "scanjobs.scanjob.dev",
            name,
            "-n",
            &ns.name,
            "--ignore-not-found",
            "-o",
            "name",
        ],
        None,
    );
    if ok {
        Ok(!out.trim().is_empty())
    } else {
        Err(out)
    }
}

/// What is wrong with how `case` was answered, if anything.
fn check(ns: &TestNamespace, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let (ok, out) = kubectl_apply(ns, &case.yaml);
    if ok {
        problems.push("was accepted".to_owned());
    }
    for want in &case.expect {
        if !out.contains(want) {
            problems.push(format!("output lacks {want:?}"));
        }
    }
    match exists(ns, &case.name) {
        Ok(false) => {}
        Ok(true) => problems.push(format!("ScanJob {} was created", case.name)),
        Err(e) => problems.push(format!("could not ask whether it exists: {e}")),
    }
    if problems.is_empty() {
        return problems;
    }
    vec![format!(
        "{}: {}\n    kubectl said: {}\n    yaml:\n      {}",
        case.what,
        problems.join("; "),
        out.trim().replace('\n', "\n      "),
        case.yaml.trim_end().replace('\n', "\n      "),
    )]
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_scanjobs_are_refused_naming_the_field() {
    let ns = TestNamespace::create("crd-validation").await;
    install_crd(&ns.client).await;

    let cases = cases();
    let mut failures: Vec<String> = cases.iter().flat_map(|c| check(&ns, c)).collect();

    // A valid one, at the longest allowed name, with a schedule, a time zone, an NFS source, a
    // queue and the placement fields.
    let valid_name = "valid-nightly-in-berlin-from-nfs-at-0100";
    assert_eq!(valid_name.len(), 40);
    let valid = with_parts(
        valid_name,
        &format!("    volume:\n      {NFS}\n    subPath: projects/..hidden/data..\n"),
        &format!("    url: {URL}\n    secretRef: {{name: toc-s3}}\n"),
        "  shards: 4\n  parallelism: 2\n  maxFailedShards: 3\n  schedule: '0 1 * * *'\n  timeZone: Europe/Berlin\n  startingDeadlineSeconds: 0\n  concurrencyPolicy: Replace\n  successfulRunsHistoryLimit: 0\n  failedRunsHistoryLimit: 0\n  queueName: nightly-batch\n  worker:\n    threads: 1\n    priorityClassName: batch.low\n    podLabels: {team: storage, example.com/tier: batch_1}\n    podAnnotations: {example.com/note: 'any text'}\n    affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}\n    stepResources: {merge: {requests: {memory: 2Gi}, limits: {memory: 4Gi}}}\n",
    );
    let (ok, out) = kubectl_apply(&ns, &valid);
    if !ok {
        failures.push(format!(
            "the valid ScanJob was refused:\n    kubectl said: {}\n    yaml:\n      {}",
            out.trim(),
            valid.trim_end().replace('\n', "\n      ")
        ));
    }
    match exists(&ns, valid_name) {
        Ok(true) => {}
        Ok(false) if !ok => {}
        Ok(false) => failures.push(format!("the valid ScanJob {valid_name} is not there")),
        Err(e) => failures.push(format!("could not ask whether {valid_name} exists: {e}")),
    }

    // Nothing else got in under another name.
    let (listed, names) = kubectl(
        &["get", "scanjobs.scanjob.dev", "-n", &ns.name, "-o", "name"],
        None,
    );
    let names: Vec<&str> = names.lines().filter(|l| !l.trim().is_empty()).collect();
    let only_valid = [format!("scanjob.scanjob.dev/{valid_name}")];
    if !listed || names != only_valid.iter().map(String::as_str).collect::<Vec<_>>() {
        failures.push(format!(
            "ScanJobs in the namespace other than the valid one: {names:?}"
        ));
    }

    let checked = cases.len();
    ns.delete().await;
    assert!(
        failures.is_empty(),
        "{} of {checked} invalid ScanJobs (or the valid one) were not answered as expected:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
