//! How a worker process ends: its exit code says whether a retry may pass, and where it writes
//! its one-line termination message.

/// A retry may pass: the store was unreachable, the file system slow, an object contended.
pub const EXIT_RETRYABLE: i32 = 1;
/// A retry cannot pass: the input is wrong and stays wrong (missing root, bad plan, a command
/// line that does not parse). A Job's `podFailurePolicy` fails the pod's index at once on it.
pub const EXIT_PERMANENT: i32 = 3;

/// The variable naming the file the worker writes its termination message to (the container's
/// `terminationMessagePath`); the same as `--termination-log`.
pub const TERMINATION_LOG_ENV: &str = "SCANJOB_TERMINATION_LOG";
