//! The `scanjob` binary: what pods run (`plan`, `scan`, `merge`) and what users run (`run`,
//! `report`). `main` parses the command line ([`flags`]), sets up logging and the async
//! runtime, and hands over to [`run`], which calls one function per command; whatever a
//! command returns or fails with becomes the exit code and the termination message.

mod flags;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;
use scanjob_contract::exit::TERMINATION_LOG_ENV;
use scanjob_contract::units::human_bytes;
use scanjob_worker::error::Error;
use scanjob_worker::fs::nfs::RpcReport;
use scanjob_worker::hash::{HashRequest, hash_partition};
use scanjob_worker::join::join_run;
use scanjob_worker::merge::merge_run;
use scanjob_worker::plan::{PlanRequest, make_plan};
use scanjob_worker::report::load_summary;
use scanjob_worker::run::{RunProgress, RunRequest, run_local};
use scanjob_worker::scan::walk::WalkCounters;
use scanjob_worker::scan::{ScanRequest, scan_shard};
use scanjob_worker::store::Location;
use scanjob_worker::store::layout::run_id;
use scanjob_worker::termination::{
    Hashed, JoinedPart, PhaseResult, TerminationMessage, failure, merged, planned, scanned,
};
use serde::Serialize;

use crate::flags::{
    Cli, Command, HashArgs, JoinCommandArgs, MergeCommandArgs, PlanArgs, ReportArgs, RunArgs,
    ScanArgs, WatchdogArgs,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging();
    raise_open_file_limit();
    let termination_log = cli.termination_log.clone();
    let runtime = match async_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            let e = Error::Io {
                what: "cannot start the async runtime".into(),
                source: e,
            };
            eprintln!("scanjob: error: {}", e.chain());
            write_termination_log(termination_log.as_ref(), failure(&e).into());
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(result) => {
            if let Some(result) = result {
                write_termination_log(termination_log.as_ref(), result.into());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scanjob: error: {}", e.chain());
            write_termination_log(termination_log.as_ref(), failure(&e).into());
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// A command line that does not parse: `--help` and `--version` print and exit 0; anything
/// else is a usage error, permanent, since the same command line fails the same way.
fn usage_error(e: clap::Error) -> ExitCode {
    if !e.use_stderr() {
        e.exit();
    }
    // The first line says what is wrong; the rest is usage help.
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    let usage = Error::Usage {
        message: line.strip_prefix("error: ").unwrap_or(line).to_string(),
    };
    write_termination_log(
        termination_log_from_raw_args().as_ref(),
        failure(&usage).into(),
    );
    let _ = e.print();
    ExitCode::from(usage.exit_code() as u8)
}

/// Logs to stderr at `RUST_LOG` (default `warn`), in colour only on a terminal: pod logs and
/// files get plain text.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
}

/// The walk has threads of its own; the merge's queries run on these.
fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

/// Runs one command. A phase's result becomes the termination message; `report` has none.
async fn run(cli: Cli) -> Result<Option<PhaseResult>, Error> {
    let json = cli.json;
    match cli.command {
        Command::Plan(args) => plan(args, json).await.map(Some),
        Command::Scan(args) => scan(args, json, cli.termination_log).await.map(Some),
        Command::Merge(args) => merge(args, json).await.map(Some),
        Command::Report(args) => report(args, json).await.map(|()| None),
        Command::Hash(args) => hash(args, json).await.map(Some),
        Command::Join(args) => join(args, json).await.map(Some),
        Command::Run(args) => plan_scan_merge(args, json).await.map(Some),
    }
}

/// `scanjob plan`: writes the run's plan.
async fn plan(args: PlanArgs, json: bool) -> Result<PhaseResult, Error> {
    let PlanArgs {
        root,
        shards,
        out,
        previous,
        run,
        walk,
        threads,
        politeness,
    } = args;
    let output = Location::parse(&out)?;
    let previous = previous.as_deref().map(Location::parse).transpose()?;
    let (plan, url) = make_plan(PlanRequest {
        root,
        output,
        shards,
        run: run.unwrap_or_else(|| run_id(chrono::Utc::now())),
        previous,
        settings: walk.settings(),
        threads,
        budget: politeness.budget(),
    })
    .await?;
    #[derive(Serialize)]
    struct PlanSummary<'a> {
        plan: &'a str,
        run: &'a str,
        shards: usize,
        balanced_by: &'a str,
        estimated_imbalance: f64,
        planning_seconds: f64,
        planning_calls: u64,
    }
    let summary = PlanSummary {
        plan: &url,
        run: &plan.run,
        shards: plan.shards.len(),
        balanced_by: &plan.balanced_by,
        estimated_imbalance: plan.estimated_imbalance,
        planning_seconds: plan.planning_seconds,
        planning_calls: plan.planning_calls,
    };
    emit(json, &summary, || {
        format!(
            "planned run {} in {} shards (balanced by {}, estimated max/mean {:.2}): {url}",
            plan.run,
            plan.shards.len(),
            plan.balanced_by,
            plan.estimated_imbalance
        )
    });
    Ok(PhaseResult::Plan(planned(&plan, &url)))
}

/// `scanjob scan`: walks one shard, watched for its deadline.
async fn scan(
    args: ScanArgs,
    json: bool,
    termination_log: Option<PathBuf>,
) -> Result<PhaseResult, Error> {
    let ScanArgs {
        plan,
        index,
        threads,
        root,
        part_size,
        politeness,
        watchdog,
    } = args;
    let counters = Arc::new(WalkCounters::default());
    start_watchdog(watchdog, index, counters.clone(), termination_log);
    let success = scan_shard(
        ScanRequest {
            plan_url: plan,
            index,
            threads,
            part_bytes: part_size,
            root_override: root,
            budget: politeness.budget(),
        },
        counters,
    )
    .await?;
    emit(json, &success, || {
        format!(
            "shard {} of run {}: {} entries, {} errors, {:.2} s",
            success.index,
            success.run,
            success.counts.entries,
            success.counts.errors,
            success.duration_seconds
        ) + &rpc_lines(success.nfs.as_ref())
    });
    Ok(PhaseResult::Scan(scanned(&success)))
}

/// `scanjob hash`: reads one partition of the run's duplicate candidates.
async fn hash(args: HashArgs, json: bool) -> Result<PhaseResult, Error> {
    let success = hash_partition(HashRequest {
        plan_url: args.plan,
        index: args.index,
        count: args.count,
        threads: args.threads,
        root_override: args.root,
        max_bytes: args.max_bytes,
        min_size: args.duplicate_min_size,
        budget: args.politeness.budget(),
    })
    .await?;
    let t = &success.totals;
    emit(json, &success, || {
        format!(
            "hash partition {} of {} of run {}: {} candidate files, {} sampled, {} read whole, \
             {} from the cache; {} read of {}",
            success.index,
            success.count,
            success.run,
            t.files,
            t.files_sampled,
            t.files_hashed,
            t.cache_hits,
            human_bytes(t.bytes_read),
            human_bytes(t.budget_bytes)
        )
    });
    Ok(PhaseResult::Hash(Hashed {
        run: success.run.clone(),
        index: success.index,
        files: t.files,
        bytes_read: t.bytes_read,
    }))
}

/// `scanjob join`: one partition of the merge's joins.
async fn join(args: JoinCommandArgs, json: bool) -> Result<PhaseResult, Error> {
    let options = args.merge.options(args.max_missing_shards)?;
    let success = join_run(&args.run, &options, args.index, args.count).await?;
    let rows: u64 = success.toc_files.iter().map(|f| f.rows).sum();
    emit(json, &success, || {
        format!(
            "join partition {} of {} of run {}: {rows} rows in {:.2} s",
            success.index, success.count, success.run, success.seconds
        )
    });
    Ok(PhaseResult::Join(JoinedPart {
        run: success.run.clone(),
        index: success.index,
        rows,
    }))
}

/// `scanjob merge`: publishes the run as the latest snapshot.
async fn merge(args: MergeCommandArgs, json: bool) -> Result<PhaseResult, Error> {
    let options = args.merge.options(args.max_missing_shards)?;
    let (manifest, url) = merge_run(&args.run, &options).await?;
    emit(json, &manifest, || {
        format!(
            "published run {}: {} files, {} directories, {}, {} errors",
            manifest.run,
            manifest.counts.files,
            manifest.counts.directories,
            human_bytes(manifest.counts.bytes),
            manifest.counts.errors
        )
    });
    Ok(PhaseResult::Merge(merged(&manifest, &url)))
}

/// `scanjob report`: prints a published snapshot's summary.
async fn report(args: ReportArgs, json: bool) -> Result<(), Error> {
    let location = Location::parse(&args.url)?;
    let (_, summary) = load_summary(&location, args.run.as_deref()).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("serialisable")
        );
    } else {
        print!("{}", summary.render_text());
    }
    Ok(())
}

/// `scanjob run`: plan, scan and merge on this machine, with a progress line on a terminal.
async fn plan_scan_merge(args: RunArgs, json: bool) -> Result<PhaseResult, Error> {
    let RunArgs {
        root,
        out,
        shards,
        threads,
        part_size,
        run,
        walk,
        politeness,
        merge,
        merge_pods,
        hash_bytes,
    } = args;
    let output = Location::parse(&out)?;
    let merge = merge.options(0)?;
    let progress = Arc::new(RunProgress::default());
    let bar = progress_bar(!json && std::io::stderr().is_terminal(), progress.clone());
    let result = run_local(
        RunRequest {
            root,
            output,
            shards,
            threads,
            part_bytes: part_size,
            run,
            settings: walk.settings(),
            budget: politeness.budget(),
            merge,
            merge_pods,
            hash_bytes,
        },
        &progress,
    )
    .await;
    if let Some(bar) = bar {
        bar.abort();
        eprintln!();
    }
    let summary = result?;
    let c = &summary.snapshot.counts;
    emit(json, &summary, || {
        format!(
            "scanned {}: {} files, {} directories, {} symlinks, {} other, {} in files, {} errors\n\
             {:.2} s, {:.0} entries/s, {} threads, {} shard(s); {} of Parquet\n\
             snapshot {}",
            summary.root,
            c.files,
            c.directories,
            c.symlinks,
            c.other_kinds,
            human_bytes(c.bytes),
            c.errors,
            summary.seconds,
            summary.entries_per_second,
            summary.threads,
            summary.shards,
            human_bytes(summary.output_bytes),
            summary.manifest
        ) + &rpc_lines(summary.nfs.as_ref())
    });
    Ok(PhaseResult::Run(merged(
        &summary.snapshot,
        &summary.manifest,
    )))
}

/// An `nfs://` root's calls by procedure, below a command's text summary.
fn rpc_lines(nfs: Option<&RpcReport>) -> String {
    match nfs {
        Some(report) => format!("\nNFS calls:\n{}", report.render().trim_end()),
        None => String::new(),
    }
}

/// Watches a shard from a thread of its own: progress lines, and the deadline.
fn start_watchdog(
    args: WatchdogArgs,
    index: u32,
    counters: Arc<WalkCounters>,
    termination_log: Option<PathBuf>,
) {
    if args.deadline_seconds.is_none() && args.progress_seconds == 0 {
        return;
    }
    let started = std::time::Instant::now();
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let deadline = args.deadline_seconds.map(Duration::from_secs);
            let every = (args.progress_seconds > 0).then(|| Duration::from_secs(args.progress_seconds));
            let mut next_progress = every;
            loop {
                let now = started.elapsed();
                let wake = [deadline, next_progress].into_iter().flatten().min();
                let Some(wake) = wake else { return };
                std::thread::sleep(wake.saturating_sub(now));
                let elapsed = started.elapsed();
                let entries = counters.entries.load(Ordering::Relaxed);
                let errors = counters.errors.load(Ordering::Relaxed);
                if deadline.is_some_and(|d| elapsed >= d) {
                    let e = Error::DeadlineExceeded {
                        index,
                        seconds: elapsed.as_secs(),
                        entries,
                        errors,
                    };
                    eprintln!("scanjob: error: {}", e.chain());
                    write_termination_log(termination_log.as_ref(), failure(&e).into());
                    // Walker threads may be stuck in calls that never return: leave now.
                    std::process::exit(e.exit_code());
                }
                eprintln!(
                    "scanjob: shard {index}: {entries} entries, {errors} errors, {:.0} entries/s after {} s",
                    entries as f64 / elapsed.as_secs_f64().max(1e-9),
                    elapsed.as_secs()
                );
                next_progress = next_progress.zip(every).map(|(n, e)| n + e);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no watchdog thread");
    }
}

/// Directories stay open while their subdirectories wait to be walked: use every descriptor the
/// hard limit allows.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// A spinner on a terminal with entries, bytes, rate and errors; nothing otherwise.
fn progress_bar(enabled: bool, progress: Arc<RunProgress>) -> Option<tokio::task::JoinHandle<()>> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"),
    );
    let started = std::time::Instant::now();
    Some(tokio::spawn(async move {
        loop {
            let t = progress.totals();
            let rate = t.entries as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} entries · {} · {:.0} entries/s · {} errors",
                t.entries,
                human_bytes(t.file_bytes),
                rate,
                t.errors
            ));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string(value).expect("serialisable"));
    } else {
        println!("{}", text());
    }
}

/// Writes the termination message; a log that cannot be written must not fail the command.
fn write_termination_log(path: Option<&PathBuf>, message: TerminationMessage) {
    if let Some(path) = path {
        let _ = std::fs::write(path, message.to_line());
    }
}

/// `--termination-log` (or its variable) when the command line itself does not parse.
fn termination_log_from_raw_args() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--termination-log" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg
            .to_str()
            .and_then(|a| a.strip_prefix("--termination-log="))
        {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(TERMINATION_LOG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
