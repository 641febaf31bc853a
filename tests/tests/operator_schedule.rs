//! Schedules with CronJob's semantics, on the real clock: per-minute runs with history limits,
//! `suspend`, `concurrencyPolicy: Forbid` skipping a tick while a run is active, and an operator
//! back from an outage honouring `startingDeadlineSeconds`. Each test waits for real minute
//! boundaries, so they take a minute or three; they run in parallel.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use kube::api::{Patch, PatchParams};
use scanjob_e2e::operator::{
    Harness, OperatorProcess, job_names, scanjob_events, scanjob_yaml, scanjob_yaml_with_worker,
    small_tree,
};
use scanjob_operator::crd::{Phase, ScanJob};

/// The first whole minute after `t`.
fn next_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap();
    floor + chrono::Duration::minutes(1)
}

async fn sleep_until(t: DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

fn succeeded_runs(sj: &ScanJob) -> Option<String> {
    sj.status
        .as_ref()?
        .last_successful_run
        .as_ref()
        .map(|r| r.id.clone())
}

async fn wait_events(
    h: &Harness,
    name: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let events = scanjob_events(&h.ns, name).await;
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not seen after {timeout:?}; events: {events:?}\n  operator log: {}",
            h.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn count(events: &[(String, String)], reason: &str) -> usize {
    events.iter().filter(|(r, _)| r == reason).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_minute_schedule_runs_every_minute_keeps_its_history_limit_and_suspends() {
    let h = Harness::start("sched-minute").await;
    let root = h.ns.dir.join("tree");
    small_tree(&root, 3, 20);
    h.apply(&scanjob_yaml(
        "minutely",
        &root,
        &h.url,
        "  schedule: '* * * * *'\n  successfulRunsHistoryLimit: 1\n",
    ));
    let first = h
        .wait(
            "minutely",
            Duration::from_secs(150),
            "succeeded once",
            |sj| succeeded_runs(sj).is_some(),
        )
        .await;
    let first_run = succeeded_runs(&first).unwrap();
    assert!(
        first_run.ends_with("00z"),
        "run ids are whole scheduled minutes: {first_run}"
    );
    let second = h
        .wait(
            "minutely",
            Duration::from_secs(150),
            "succeeded twice",
            |sj| succeeded_runs(sj).is_some_and(|r| r != first_run),
        )
        .await;
    let second_run = succeeded_runs(&second).unwrap();
    let st = second.status.as_ref().unwrap();
    let gap = chrono::NaiveDateTime::parse_from_str(&second_run, "%Y%m%dt%H%M%Sz").unwrap()
        - chrono::NaiveDateTime::parse_from_str(&first_run, "%Y%m%dt%H%M%Sz").unwrap();
    assert_eq!(gap.num_seconds(), 60, "{first_run} then {second_run}");
    assert!(st.next_schedule_time.is_some());

    // History limit 1: the first run's Jobs go once the second has succeeded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = job_names(&h.ns, "minutely").await;
        if !jobs.iter().any(|j| j.contains(&first_run)) {
            assert!(jobs.iter().any(|j| j.contains(&second_run)), "{jobs:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first run's Jobs are kept: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Suspended: no run starts at the next minute (nor the one after the active one, if any).
    h.ns.api::<ScanJob>()
        .patch(
            "minutely",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspending");
    let suspended = h
        .wait(
            "minutely",
            Duration::from_secs(90),
            "suspended and idle",
            |sj| {
                let st = sj.status.as_ref();
                st.is_some_and(|s| {
                    s.next_schedule_time.is_none()
                        && s.current_run.is_none()
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Progressing" && c.reason == "Suspended")
                })
            },
        )
        .await;
    let started_before = count(&scanjob_events(&h.ns, "minutely").await, "RunStarted");
    sleep_until(next_minute(Utc::now()) + chrono::Duration::seconds(8)).await;
    let events = scanjob_events(&h.ns, "minutely").await;
    assert_eq!(
        count(&events, "RunStarted"),
        started_before,
        "a suspended schedule started a run: {events:?}"
    );
    let after = h.ns.api::<ScanJob>().get("minutely").await.unwrap();
    assert_eq!(
        after
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.clone()),
        suspended
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.clone())
    );
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forbid_skips_a_tick_while_a_run_is_active() {
    let slow = scanjob_e2e::node::wrapper_image("slower-scanjob", r#"[ "$1" = scan ] && sleep 75"#);
    let h = Harness::start("sched-forbid").await;
    let root = h.ns.dir.join("tree");
    small_tree(&root, 2, 5);
    h.apply(&scanjob_yaml_with_worker(
        "forbid",
        &root,
        &h.url,
        &format!("image: '{slow}'"),
        "  schedule: '* * * * *'\n  concurrencyPolicy: Forbid\n",
    ));
    let events = wait_events(
        &h,
        "forbid",
        Duration::from_secs(160),
        "a skipped tick",
        |e| count(e, "RunSkipped") >= 1,
    )
    .await;
    assert_eq!(count(&events, "RunStarted"), 1, "{events:?}");
    let skipped = events.iter().find(|(r, _)| r == "RunSkipped").unwrap();
    assert!(skipped.1.contains("ConcurrentRunActive"), "{skipped:?}");
    let sj = h.ns.api::<ScanJob>().get("forbid").await.unwrap();
    let st = sj.status.unwrap();
    assert_eq!(
        st.last_skipped_schedule.map(|s| s.reason).as_deref(),
        Some("ConcurrentRunActive")
    );
    assert!(st.current_run.is_some(), "the first run is still active");
    assert!(st.concurrent_runs.is_empty());
    h.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_back_from_an_outage_honours_starting_deadline_seconds() {
    let mut h = Harness::start("sched-outage").await;
    // The operator is away while the schedule comes due.
    if let Some(op) = h.operator.take() {
        op.kill();
    }
    let root = h.ns.dir.join("tree");
    small_tree(&root, 2, 5);
    for (name, deadline) in [("strict", 10), ("lenient", 3600)] {
        h.apply(&scanjob_yaml(
            name,
            &root,
            &h.url,
            &format!("  schedule: '* * * * *'\n  startingDeadlineSeconds: {deadline}\n"),
        ));
    }
    let due = next_minute(Utc::now());
    sleep_until(due + chrono::Duration::seconds(15)).await;
    let op = OperatorProcess::start(&h.ns);
    h.log = op.log.clone();
    h.operator = Some(op);
    let expected_run = due.format("%Y%m%dt%H%M%Sz").to_string();

    // Within its deadline: the missed time runs late, under its scheduled run id.
    let lenient = h.wait_finished("lenient", Phase::Succeeded).await;
    assert_eq!(
        succeeded_runs(&lenient).as_deref(),
        Some(expected_run.as_str())
    );

    // Beyond its deadline: skipped, with the reason; no run.
    let strict = h
        .wait("strict", Duration::from_secs(30), "skipped", |sj| {
            sj.status
                .as_ref()
                .is_some_and(|s| s.last_skipped_schedule.is_some())
        })
        .await;
    let st = strict.status.unwrap();
    let skipped = st.last_skipped_schedule.unwrap();
    assert_eq!(skipped.reason, "MissedStartingDeadline");
    assert_eq!(skipped.time.0.as_second(), due.timestamp());
    let events = scanjob_events(&h.ns, "strict").await;
    let started: Vec<_> = events
        .iter()
        .filter(|(r, n)| r == "RunStarted" && n.contains(&expected_run))
        .collect();
    assert!(
        started.is_empty(),
        "the missed run started anyway: {events:?}"
    );
    assert!(st.next_schedule_time.is_some());
    h.delete().await;
}
