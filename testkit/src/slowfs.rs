//! `slowfs` mounts (built from `testkit/slowfs` by `tests/cluster/install.sh`, found through
//! `SCANJOB_SLOWFS`): a directory or a generated tree served read-only with a fixed latency per
//! metadata request. A test may freeze the server (every request to the mount then waits, as
//! on a hung NFS server) or kill it (every request fails with ENOTCONN). `--allow-other` lets
//! uids other than root in, so pods reach the mount through a hostPath volume.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// A mounted slowfs; unmounted (and thawed first) when dropped, also when a test panics.
pub struct SlowFs {
    child: Child,
    mountpoint: PathBuf,
}

impl SlowFs {
    /// Serves `backing` at `mountpoint` (created if missing) with `latency_us` added to every
    /// metadata request, and waits until the mount is there.
    pub fn mount(backing: &Path, mountpoint: &Path, latency_us: u64) -> Self {
        Self::start(
            &[backing.as_os_str(), mountpoint.as_os_str()],
            &["--latency-us", &latency_us.to_string()],
            mountpoint,
            Duration::from_secs(20),
        )
    }

    /// Serves slowfs' generated tree `spec` (`files=16M,churn=0.005`, …) at `mountpoint` with
    /// `latency_us` per request, writing its ground truth to `summary` and its request counters
    /// to `stats`; waits until the mount is there (a 16 M-file summary takes about 15 s).
    pub fn synthetic(
        spec: &str,
        mountpoint: &Path,
        latency_us: u64,
        summary: &Path,
        stats: &Path,
    ) -> Self {
        Self::start(
            &[
                "--synthetic".as_ref(),
                spec.as_ref(),
                mountpoint.as_os_str(),
            ],
            &[
                "--latency-us",
                &latency_us.to_string(),
                "--summary",
                &summary.to_string_lossy(),
                "--stats",
                &stats.to_string_lossy(),
            ],
            mountpoint,
            Duration::from_secs(300),
        )
    }

    fn start(args: &[&OsStr], options: &[&str], mountpoint: &Path, wait: Duration) -> Self {
        let binary = std::env::var("SCANJOB_SLOWFS").unwrap_or_else(|_| {
            panic!("SCANJOB_SLOWFS is not set: run the tests with `tests/run`")
        });
        std::fs::create_dir_all(mountpoint).expect("creating the mount point");
        let child = Command::new(&binary)
            .args(args)
            .args(options)
            .arg("--allow-other")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut fs = Self {
            child,
            mountpoint: mountpoint.to_path_buf(),
        };
        let deadline = Instant::now() + wait;
        while !is_mounted(mountpoint) {
            if let Ok(Some(status)) = fs.child.try_wait() {
                panic!(
                    "slowfs exited ({status}) before mounting {}",
                    mountpoint.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "slowfs did not mount {} within {wait:?}",
                mountpoint.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        fs
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Stops the server: from now on every request to the mount waits.
    pub fn freeze(&self) {
        self.signal(Signal::STOP);
    }

    /// Lets the server answer again.
    pub fn thaw(&self) {
        self.signal(Signal::CONT);
    }

    /// SIGKILL: the server dies without unmounting, and every call to the mount fails with
    /// ENOTCONN until it is dropped.
    pub fn kill(&mut self) {
        self.child.kill().expect("killing slowfs");
        self.child.wait().expect("reaping slowfs");
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child's pid");
        kill_process(pid, signal).expect("signalling slowfs");
    }
}

impl Drop for SlowFs {
    fn drop(&mut self) {
        // A reaped server's pid may already belong to another process: signal only a live one.
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM makes slowfs unmount and exit; a stopped process must be continued first.
            if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
                let _ = kill_process(pid, Signal::CONT);
                let _ = kill_process(pid, Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let path = path.to_string_lossy();
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path.as_ref()))
}
