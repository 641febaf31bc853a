//! The shrink guard on the cluster: a night whose volume was not mounted (an empty directory
//! where the store was) is not published; the run says why in its status and an Event; the
//! `scanjob.dev/allow-shrink` annotation publishes a real shrink once.

use scanjob_e2e::operator::{Harness, scanjob_events, scanjob_yaml_with_worker, small_tree};
use scanjob_operator::crd::Outcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_night_whose_volume_was_not_mounted_is_not_published_until_allowed() {
    let h = Harness::start("shrink").await;
    let root = h.ns.dir.join("tree");
    let files = small_tree(&root, 3, 10);
    h.apply(&scanjob_yaml_with_worker(
        "shrink",
        &root,
        &h.url,
        "",
        "  shards: 2\n",
    ));
    let sj = h
        .wait_finished("shrink", scanjob_operator::crd::Phase::Succeeded)
        .await;
    let status = sj.status.unwrap();
    let first = status.last_run.unwrap().id;
    assert_eq!(status.last_successful_run.unwrap().files, files as i64);

    // Tonight the volume is not mounted: its mount point is an empty directory.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let sj = h
        .run_again("shrink", &first, json!({"scanjob.dev/run-now": "1"}))
        .await;
    let status = sj.status.unwrap();
    let refused = status.last_run.unwrap();
    assert_eq!(refused.outcome, Outcome::Failed, "{refused:?}");
    assert_eq!(refused.reason, "MergeFailed", "{refused:?}");
    let said = format!("files fell from {files} to 0 (-100.0 %) since snapshot {first}");
    assert!(refused.message.contains(&said), "{}", refused.message);
    assert_eq!(
        status.last_successful_run.unwrap().id,
        first,
        "the previous night stays the published one"
    );
    let events = scanjob_events(&h.ns, "shrink").await;
    assert!(
        events.iter().any(|(_, message)| message.contains(&said)),
        "an Event says why: {events:?}"
    );

    // The store really is empty now: allowed once, the next run publishes it.
    let sj = h
        .run_again(
            "shrink",
            &refused.id,
            json!({"scanjob.dev/allow-shrink": "yes", "scanjob.dev/run-now": "2"}),
        )
        .await;
    let status = sj.status.unwrap();
    let published = status.last_run.unwrap();
    assert_eq!(published.outcome, Outcome::Succeeded, "{published:?}");
    assert_eq!(status.last_successful_run.unwrap().files, 0);
    assert_eq!(status.last_allow_shrink.as_deref(), Some("yes"));
    h.delete().await;
}
