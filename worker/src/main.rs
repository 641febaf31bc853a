//! The `scanjob` binary: what pods run (`plan`, `scan`, `merge`) and what users run (`run`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use scanjob_contract::exit::{EXIT_PERMANENT, TERMINATION_LOG_ENV};
use scanjob_worker::error::{EXIT_RETRYABLE, Error};
use scanjob_worker::insights::engine::EngineOptions;
use scanjob_worker::insights::summary::human_bytes;
use scanjob_worker::insights::{InsightOptions, load_summary};
use scanjob_worker::layout::{WalkSettings, run_id};
use scanjob_worker::phase::local::{RunProgress, RunRequest, run_local};
use scanjob_worker::phase::merge::{MergeOptions, merge_run};
use scanjob_worker::phase::plan::{PlanRequest, make_plan};
use scanjob_worker::phase::scan::{ScanRequest, scan_shard};
use scanjob_worker::report::{
    Failure, PhaseResult, TerminationMessage, failure, merged, planned, scanned,
};
use scanjob_worker::store::Location;
use scanjob_worker::walk::WalkCounters;
use serde::Serialize;

/// Scan a file system into a Parquet table of contents.
#[derive(Parser)]
#[command(name = "scanjob", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print one machine-readable JSON summary on stdout instead of progress and text.
    #[arg(long, global = true)]
    json: bool,
    /// Where to write the result as one line of JSON for Kubernetes (the container's
    /// terminationMessagePath), success or failure.
    #[arg(long, global = true, env = TERMINATION_LOG_ENV)]
    termination_log: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct WalkArgs {
    /// Prune entries whose name matches this glob (repeatable), e.g. `.snapshot`.
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Do not descend into directories on other file systems.
    #[arg(long)]
    one_file_system: bool,
    /// Path level (1 = first below the root) whose name fills the `project` column; 0 for none.
    #[arg(long, default_value_t = 1)]
    project_level: usize,
}

impl WalkArgs {
    fn settings(self) -> WalkSettings {
        WalkSettings {
            one_file_system: self.one_file_system,
            exclude: self.exclude,
            project_level: self.project_level,
        }
    }
}

/// Politeness towards a shared file server (see the `politeness` module).
#[derive(Args, Clone, Copy)]
struct PolitenessArgs {
    /// At most this many file-system calls (directory opens and stats) per second, shared by
    /// all threads; at least 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_ops_per_second: Option<u32>,
    /// Halve the calls in flight while their p99 latency is above MS milliseconds, and add one
    /// back per second it is not (AIMD); at least 1.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..))]
    latency_guard_ms: Option<u32>,
}

/// For a shard on a file system that may turn slow or hang.
#[derive(Args, Clone, Copy)]
struct WatchdogArgs {
    /// Give up after this many seconds: exit 1 (retryable) with a `deadline_exceeded` report,
    /// even while calls hang in the kernel. Set it below the pod's activeDeadlineSeconds.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_seconds: Option<u64>,
    /// Print a progress line to stderr every this many seconds; 0 for none.
    #[arg(long, value_name = "S", default_value_t = 30)]
    progress_seconds: u64,
}

/// What `merge` derives for each snapshot and how many snapshots it keeps.
#[derive(Args, Clone, Copy)]
struct MergeArgs {
    /// After publishing, remove all but the K newest snapshots and their runs' files (never
    /// the one latest.json names); at least 1. Default: keep everything.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    keep_snapshots: Option<u32>,
    /// Files (and directory trees) smaller than this are not duplicate candidates.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    duplicate_min_size: u64,
    /// Directories down to this depth get a row of recursive totals in rollups/by_directory.
    #[arg(long, value_name = "D", default_value_t = 3)]
    rollup_depth: u32,
    /// Memory the merge's queries may hold: sorts and aggregates spill to disk beyond it, and
    /// the big joins run in as many passes over the rows as it takes for one to fit half of it
    /// [default: half the memory limit of the process's cgroup (a pod's limit), or 2 GiB
    /// without one].
    #[arg(long, value_name = "BYTES")]
    merge_memory: Option<usize>,
    /// Rows per pass of the big joins [default: as many as half of --merge-memory holds, at
    /// 256 bytes a row].
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    merge_join_rows: Option<u64>,
}

impl MergeArgs {
    fn options(self, max_missing_shards: u32) -> MergeOptions {
        MergeOptions {
            max_missing_shards,
            keep_snapshots: self.keep_snapshots,
            insights: InsightOptions {
                rollup_depth: self.rollup_depth,
                duplicate_min_size: self.duplicate_min_size,
                engine: EngineOptions {
                    memory_limit_bytes: self.merge_memory.unwrap_or_else(|| {
                        EngineOptions::memory_limit_for(scanjob_worker::cgroup::memory_limit())
                    }),
                    join_pass_rows: self.merge_join_rows,
                    ..EngineOptions::default()
                },
            },
        }
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
                    let message = format!(
                        "shard {index} did not finish within {} s ({entries} entries, {errors} errors so far)",
                        elapsed.as_secs()
                    );
                    eprintln!("scanjob: error: {message}");
                    write_termination_log(
                        termination_log.as_ref(),
                        Failure {
                            error: "deadline_exceeded".into(),
                            message,
                            retryable: true,
                        }
                        .into(),
                    );
                    // Walker threads may be stuck in calls that never return: leave now.
                    std::process::exit(EXIT_RETRYABLE);
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

/// At least 16 walker threads, more on bigger machines. Measured (docs/latency.md, "The
/// default thread count"): on a file system with 1 ms per metadata request, 16 threads scan 7×
/// faster than 2; on a warm local disk they cost 8 % more wall time than 2 and ~80 MiB more
/// memory.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(16, |n| n.get().max(16))
}

#[derive(Subcommand)]
enum Command {
    /// Split the tree into balanced shards and write `<out>/runs/<run>/plan.json`.
    Plan {
        root: PathBuf,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        #[arg(long, value_name = "URL")]
        out: String,
        /// Balance by the latest snapshot at this URL (usually the same as --out).
        #[arg(long, value_name = "URL")]
        previous: Option<String>,
        /// Run id; default: the current UTC time, e.g. 20261123t010000z.
        #[arg(long)]
        run: Option<String>,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Scan one shard of a plan into `<out>/runs/<run>/shards/<index>/`.
    Scan {
        #[arg(long, value_name = "URL")]
        plan: String,
        /// Shard index; an Indexed Job's pods get it from JOB_COMPLETION_INDEX.
        #[arg(long, env = "JOB_COMPLETION_INDEX")]
        index: u32,
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
        /// Where the planned root is mounted, if not at the planned path.
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
        part_size: usize,
        #[command(flatten)]
        politeness: PolitenessArgs,
        #[command(flatten)]
        watchdog: WatchdogArgs,
    },
    /// Check every shard of a run and publish it as the latest snapshot.
    Merge {
        /// `<out>/runs/<run>`.
        #[arg(long, value_name = "URL")]
        run: String,
        /// Publish anyway when at most this many shards have no _SUCCESS.json (and at least
        /// one has): the manifest's `missing_shards` names them.
        #[arg(long, default_value_t = 0, value_name = "N")]
        max_missing_shards: u32,
        #[command(flatten)]
        merge: MergeArgs,
    },
    /// Print the report of the latest (or a named) snapshot: totals, top directories,
    /// extensions, owners and projects, age, growth, duplicates.
    Report {
        /// The output location (what `--out` was).
        url: String,
        /// A snapshot's run id; default: the one latest.json names.
        #[arg(long)]
        run: Option<String>,
    },
    /// Plan, scan and merge on this machine: the whole job without Kubernetes.
    Run {
        root: PathBuf,
        #[arg(long, value_name = "URL", default_value = "./toc")]
        out: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
        #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
        part_size: usize,
        #[arg(long)]
        run: Option<String>,
        #[command(flatten)]
        walk: WalkArgs,
        #[command(flatten)]
        politeness: PolitenessArgs,
        #[command(flatten)]
        merge: MergeArgs,
    },
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

/// Runs the command; its result becomes the termination message.
async fn execute(cli: Cli) -> Result<Option<PhaseResult>, Error> {
    if let Command::Report { url, run } = &cli.command {
        let location = Location::parse(url)?;
        let (_, summary) = load_summary(&location, run.as_deref()).await?;
        if cli.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&summary).expect("serialisable")
            );
        } else {
            print!("{}", summary.render_text());
        }
        return Ok(None);
    }
    execute_phase(cli).await.map(Some)
}

async fn execute_phase(cli: Cli) -> Result<PhaseResult, Error> {
    let json = cli.json;
    let termination_log = cli.termination_log.clone();
    match cli.command {
        Command::Plan {
            root,
            shards,
            out,
            previous,
            run,
            walk,
        } => {
            let output = Location::parse(&out)?;
            let previous = previous.as_deref().map(Location::parse).transpose()?;
            let (plan, url) = make_plan(PlanRequest {
                root,
                output,
                shards,
                run: run.unwrap_or_else(|| run_id(chrono::Utc::now())),
                previous,
                settings: walk.settings(),
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
            }
            let summary = PlanSummary {
                plan: &url,
                run: &plan.run,
                shards: plan.shards.len(),
                balanced_by: &plan.balanced_by,
                estimated_imbalance: plan.estimated_imbalance,
                planning_seconds: plan.planning_seconds,
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
        Command::Scan {
            plan,
            index,
            threads,
            root,
            part_size,
            politeness,
            watchdog,
        } => {
            let counters = Arc::new(WalkCounters::default());
            start_watchdog(watchdog, index, counters.clone(), termination_log.clone());
            let success = scan_shard(
                ScanRequest {
                    plan_url: plan,
                    index,
                    threads,
                    part_bytes: part_size,
                    root_override: root,
                    max_ops_per_second: politeness.max_ops_per_second,
                    latency_guard_ms: politeness.latency_guard_ms,
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
                )
            });
            Ok(PhaseResult::Scan(scanned(&success)))
        }
        Command::Report { .. } => unreachable!("handled by execute"),
        Command::Merge {
            run,
            max_missing_shards,
            merge,
        } => {
            let (manifest, url) = merge_run(&run, &merge.options(max_missing_shards)).await?;
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
        Command::Run {
            root,
            out,
            shards,
            threads,
            part_size,
            run,
            walk,
            politeness,
            merge,
        } => {
            let output = Location::parse(&out)?;
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
                    max_ops_per_second: politeness.max_ops_per_second,
                    latency_guard_ms: politeness.latency_guard_ms,
                    merge: merge.options(0),
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
                )
            });
            Ok(PhaseResult::Run(merged(
                &summary.snapshot,
                &summary.manifest,
            )))
        }
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version.
                e.exit();
            }
            // The first line says what is wrong; the rest is usage help.
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default();
            let message = line.strip_prefix("error: ").unwrap_or(line).to_string();
            write_termination_log(
                termination_log_from_raw_args().as_ref(),
                Failure {
                    error: "usage".into(),
                    message,
                    retryable: false,
                }
                .into(),
            );
            // The same command line fails the same way: a retry cannot pass.
            let _ = e.print();
            return ExitCode::from(EXIT_PERMANENT as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: pod logs and files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    raise_open_file_limit();
    let termination_log = cli.termination_log.clone();
    // The walk has threads of its own; the merge's queries run on these.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let message = format!("cannot start the async runtime: {e}");
            eprintln!("scanjob: error: {message}");
            write_termination_log(
                termination_log.as_ref(),
                Failure {
                    error: "io".into(),
                    message,
                    retryable: true,
                }
                .into(),
            );
            return ExitCode::from(EXIT_RETRYABLE as u8);
        }
    };
    match runtime.block_on(execute(cli)) {
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

#[cfg(test)]
mod tests {
    //! The command lines the operator writes (the contract crate's `args`) parse with this
    //! binary's own parser into the values they were made from.

    use scanjob_contract::args::{
        MergeArgs as MergeLine, PlanArgs, ScanArgs, WalkArgs as WalkLine,
    };

    use super::*;

    fn parse(args: Vec<String>) -> Command {
        let line = std::iter::once("scanjob".to_string()).chain(args);
        match Cli::try_parse_from(line) {
            Ok(cli) => cli.command,
            Err(e) => panic!("the worker rejects the operator's command line: {e}"),
        }
    }

    #[test]
    fn the_operators_plan_line_parses_into_its_values() {
        let line = PlanArgs {
            root: "/scan/projects".into(),
            shards: 12,
            out: "s3://toc/isilon".into(),
            previous: Some("s3://toc/isilon".into()),
            run: Some("20261123t000000z".into()),
            walk: WalkLine {
                exclude: vec![".snapshot".into(), "*.tmp".into()],
                one_file_system: true,
                project_level: 2,
            },
        };
        let Command::Plan {
            root,
            shards,
            out,
            previous,
            run,
            walk,
        } = parse(line.to_args())
        else {
            panic!("not a plan command");
        };
        assert_eq!(root, PathBuf::from(&line.root));
        assert_eq!(
            (shards, out, previous, run),
            (line.shards, line.out, line.previous, line.run)
        );
        assert_eq!(
            (walk.exclude, walk.one_file_system, walk.project_level),
            (
                line.walk.exclude,
                line.walk.one_file_system,
                line.walk.project_level
            )
        );
    }

    #[test]
    fn the_operators_scan_line_parses_into_its_values() {
        let line = ScanArgs {
            plan: "s3://toc/isilon/runs/20261123t000000z/plan.json".into(),
            threads: Some(32),
            max_ops_per_second: Some(2500),
            latency_guard_ms: Some(50),
            deadline_seconds: Some(7140),
        };
        // An Indexed Job's pod gets its index from the environment; here it is a flag.
        let mut args = line.to_args();
        args.extend(["--index".into(), "4".into()]);
        let Command::Scan {
            plan,
            index,
            threads,
            politeness,
            watchdog,
            ..
        } = parse(args)
        else {
            panic!("not a scan command");
        };
        assert_eq!((plan, index, Some(threads)), (line.plan, 4, line.threads));
        assert_eq!(
            (politeness.max_ops_per_second, politeness.latency_guard_ms),
            (line.max_ops_per_second, line.latency_guard_ms)
        );
        assert_eq!(watchdog.deadline_seconds, line.deadline_seconds);
    }

    #[test]
    fn the_operators_merge_line_parses_into_its_values() {
        let line = MergeLine {
            run: "s3://toc/isilon/runs/20261123t000000z".into(),
            max_missing_shards: 2,
            keep_snapshots: Some(7),
        };
        let Command::Merge {
            run,
            max_missing_shards,
            merge,
        } = parse(line.to_args())
        else {
            panic!("not a merge command");
        };
        assert_eq!(
            (run, max_missing_shards, merge.keep_snapshots),
            (line.run, line.max_missing_shards, line.keep_snapshots)
        );
    }

    #[test]
    fn the_least_the_operator_passes_parses_too() {
        let scan = ScanArgs {
            plan: "file:///toc/runs/r/plan.json".into(),
            ..ScanArgs::default()
        };
        let mut args = scan.to_args();
        args.extend(["--index".into(), "0".into()]);
        assert!(matches!(parse(args), Command::Scan { .. }));
        let merge = MergeLine {
            run: "file:///toc/runs/r".into(),
            ..MergeLine::default()
        };
        assert!(matches!(parse(merge.to_args()), Command::Merge { .. }));
    }
}
