//! The worker's one error type. Every variant says what the user can act on; `exit_code` says
//! what a retry would do: 3 only when a retry cannot succeed (the same input fails the same
//! way), 1 whenever it might. A Job's `podFailurePolicy` fails an index at once on 3.

use scanjob_contract::args::ALLOW_SHRINK_ANNOTATION;
pub use scanjob_contract::exit::{EXIT_PERMANENT, EXIT_RETRYABLE};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scan root {path}: {reason}")]
    BadRoot { path: String, reason: String },

    #[error("output URL {url:?}: {reason}")]
    BadOutputUrl { url: String, reason: String },

    #[error("exclude pattern {pattern:?}: {reason}")]
    BadExclude { pattern: String, reason: String },

    #[error("plan {url}: {reason}")]
    BadPlan { url: String, reason: String },

    #[error("shard index {index} is out of range: plan {run} has {shards} shards (0..={last})", last = shards.saturating_sub(1))]
    IndexOutOfRange {
        index: u32,
        shards: u32,
        run: String,
    },

    #[error("run {run} is not complete: shards {missing:?} have no _SUCCESS.json")]
    Incomplete { run: String, missing: Vec<u32> },

    #[error("{what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },

    /// A Delta table at the output uses a table feature (or a legacy protocol version's
    /// feature, turned on) that scanjob's commits cannot honour; it is left as it is.
    #[error("{what}: {reason}")]
    Unsupported { what: String, reason: String },

    /// Another writer kept winning a conditional write; the next attempt may win.
    #[error("{what}: {reason}")]
    Contended { what: String, reason: String },

    #[error("object store {url}/{path}: {source}")]
    Store {
        url: String,
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("Parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A query of the merge's insights (history join, diffs, rollups, duplicates) failed.
    #[error("{what}: {source}")]
    Query {
        what: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    /// The merge's query engine could not spill to its scratch directory: the disk is full.
    /// Nothing is published; a retry with more scratch space (or memory) succeeds.
    #[error(
        "{what}: the scratch directory {dir} is full; nothing is published. Give the merge more \
         scratch space (a bigger emptyDir, or TMPDIR on a bigger disk) or more memory \
         (--merge-memory, the pod's memory limit)"
    )]
    ScratchFull {
        what: String,
        dir: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A command line that does not parse: the same line fails the same way.
    #[error("{message}")]
    Usage { message: String },

    /// A shard did not finish within `--deadline-seconds`: the file system may have turned
    /// slow or hung. A retry may be luckier; the pod is not left to be killed mid-call.
    #[error(
        "shard {index} did not finish within {seconds} s ({entries} entries, {errors} errors so far)"
    )]
    DeadlineExceeded {
        index: u32,
        seconds: u64,
        entries: u64,
        errors: u64,
    },

    /// The scanned file system itself failed (its server or FUSE daemon went away) during
    /// the walk: nothing of the shard is kept, since error rows for the rest of the tree
    /// would publish a night in which it disappeared. A retry scans the shard again.
    #[error(
        "the file system at {root} failed at {path:?} ({source}); nothing of this shard is kept"
    )]
    FileSystemFailed {
        root: String,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// This night holds a much smaller share of the store than the previous snapshot: the
    /// volume may not have been mounted, or a mount failed mid-scan. Nothing is published.
    #[error(
        "not published: {what} fell from {before} to {now} (-{percent:.1} %) since snapshot \
         {previous_run}, more than the allowed {max_percent} %; if the store really shrank, \
         publish it with `scanjob merge --max-shrink-percent 100` (a ScanJob: annotate it \
         {ALLOW_SHRINK_ANNOTATION}=<any new value> and run it again)"
    )]
    Shrunk {
        what: &'static str,
        before: u64,
        now: u64,
        percent: f64,
        previous_run: String,
        max_percent: u32,
    },
}

impl Error {
    /// A failed query of the merge: [`Self::ScratchFull`] when a cause is a full disk (a
    /// spill that found no room), else [`Self::Query`].
    pub fn query(what: impl Into<String>, source: datafusion::error::DataFusionError) -> Self {
        let (what, source) = (what.into(), Box::new(source));
        if disk_full(source.as_ref()) {
            Self::ScratchFull {
                what,
                dir: std::env::temp_dir().display().to_string(),
                source,
            }
        } else {
            Self::Query { what, source }
        }
    }

    pub fn store(url: &str, path: &str, source: object_store::Error) -> Self {
        Self::Store {
            url: url.to_string(),
            path: path.to_string(),
            source,
        }
    }

    /// The process exit code for this error: [`EXIT_PERMANENT`] only when a retry with the
    /// same input cannot succeed.
    pub fn exit_code(&self) -> i32 {
        match self {
            // Wrong input, read the same way by every attempt.
            Self::BadRoot { .. }
            | Self::BadOutputUrl { .. }
            | Self::BadExclude { .. }
            | Self::BadPlan { .. }
            | Self::IndexOutOfRange { .. }
            | Self::Corrupt { .. }
            | Self::Usage { .. }
            | Self::Unsupported { .. }
            // The same tree merged again shrinks the same way; publishing it takes a person.
            | Self::Shrunk { .. } => EXIT_PERMANENT,
            // A shard may still commit, a writer let go, a store or file server come back.
            // Store, Parquet and query errors mix transient causes (timeouts, throttling, I/O,
            // memory) with lasting ones the error type does not tell apart: retrying a lasting
            // one costs an attempt, failing a transient one for good costs the run.
            Self::Incomplete { .. }
            | Self::Contended { .. }
            | Self::Store { .. }
            | Self::Parquet { .. }
            | Self::Query { .. }
            | Self::ScratchFull { .. }
            | Self::Io { .. }
            | Self::DeadlineExceeded { .. }
            | Self::FileSystemFailed { .. } => EXIT_RETRYABLE,
        }
    }

    /// The error and its causes, joined by ": " (what the one stderr line and the termination
    /// message say). A cause whose text the line already holds (many errors print their
    /// source) is not repeated.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }

    /// A short stable label for metrics and the pod's termination message.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadRoot { .. } => "bad_root",
            Self::BadOutputUrl { .. } => "bad_output_url",
            Self::BadExclude { .. } => "bad_exclude",
            Self::BadPlan { .. } => "bad_plan",
            Self::IndexOutOfRange { .. } => "index_out_of_range",
            Self::Incomplete { .. } => "incomplete",
            Self::Corrupt { .. } => "corrupt",
            Self::Unsupported { .. } => "unsupported_table",
            Self::Contended { .. } => "contended",
            Self::Store { .. } => "store",
            Self::Parquet { .. } => "parquet",
            Self::Query { .. } => "query",
            Self::ScratchFull { .. } => "scratch_full",
            Self::Io { .. } => "io",
            Self::FileSystemFailed { .. } => "file_system_failed",
            Self::Shrunk { .. } => "shrunk",
            Self::Usage { .. } => "usage",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `error` or one of its causes is ENOSPC. Some causes reach here only as text (an
/// error turned into a message on its way through a spill), so the text counts too.
fn disk_full(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return true;
        }
        if e.to_string().contains("No space left on device") {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, and what a retry of the same command would do.
    #[test]
    fn only_errors_no_retry_can_fix_are_permanent() {
        let io = || std::io::Error::other("EIO");
        let s = String::new;
        let cases = [
            (
                Error::BadRoot {
                    path: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::BadOutputUrl {
                    url: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::BadExclude {
                    pattern: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::BadPlan {
                    url: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::IndexOutOfRange {
                    index: 3,
                    shards: 2,
                    run: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::Corrupt {
                    what: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            (
                Error::Unsupported {
                    what: s(),
                    reason: s(),
                },
                EXIT_PERMANENT,
            ),
            // A shard may still commit.
            (
                Error::Incomplete {
                    run: s(),
                    missing: vec![1],
                },
                EXIT_RETRYABLE,
            ),
            // Another merge moved latest.json meanwhile; the next attempt reads it anew.
            (
                Error::Contended {
                    what: s(),
                    reason: s(),
                },
                EXIT_RETRYABLE,
            ),
            (
                Error::store(
                    "s3://b",
                    "p",
                    object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(io()),
                    },
                ),
                EXIT_RETRYABLE,
            ),
            (
                Error::Io {
                    what: s(),
                    source: io(),
                },
                EXIT_RETRYABLE,
            ),
            (
                Error::Parquet {
                    path: s(),
                    source: parquet::errors::ParquetError::External(Box::new(io())),
                },
                EXIT_RETRYABLE,
            ),
            (
                Error::query("q", datafusion::error::DataFusionError::IoError(io())),
                EXIT_RETRYABLE,
            ),
            (
                Error::query(
                    "q",
                    datafusion::error::DataFusionError::IoError(std::io::Error::from(
                        std::io::ErrorKind::StorageFull,
                    )),
                ),
                EXIT_RETRYABLE,
            ),
            (
                Error::FileSystemFailed {
                    root: s(),
                    path: s(),
                    source: io(),
                },
                EXIT_RETRYABLE,
            ),
            (
                Error::Shrunk {
                    what: "files",
                    before: 100,
                    now: 1,
                    percent: 99.0,
                    previous_run: s(),
                    max_percent: 50,
                },
                EXIT_PERMANENT,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{}", error.label());
        }
    }

    /// A spill that found no room says so, however deep the ENOSPC sits or only as text.
    #[test]
    fn a_full_scratch_disk_is_named_and_other_query_errors_are_not() {
        use datafusion::error::DataFusionError;
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let deep = DataFusionError::Context(
            "sort".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(arrow_schema::ArrowError::IoError("spill".into(), full())),
                None,
            )),
        );
        let text =
            DataFusionError::Execution("write: No space left on device (os error 28)".into());
        for error in [deep, text] {
            let error = Error::query("diff", error);
            assert_eq!(error.label(), "scratch_full", "{error}");
            assert!(
                error.to_string().contains("is full; nothing is published"),
                "{error}"
            );
        }
        let other = Error::query("diff", DataFusionError::Execution("bad plan".into()));
        assert_eq!(other.label(), "query");
    }
}
