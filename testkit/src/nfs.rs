//! A real NFSv3 server for a test: nfs-ganesha exporting one directory read-only, started by
//! `tests/nfs/ganesha.sh` in a network namespace of its own and reached over a veth pair from
//! the host (and so from pods with `hostNetwork`). Stopped, namespace and all, when dropped.
//! Needs root, nfs-ganesha and rpcbind (`bash tests/cluster/install.sh`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::workspace_dir;

/// A running ganesha.
pub struct Ganesha {
    script: Child,
    stdin: Option<ChildStdin>,
    ip: String,
    pid: u32,
}

impl Ganesha {
    /// Exports `dir` with `squash` (`No_Root_Squash`, `Root_Squash` or `All_Squash`) on
    /// 10.99.`net`.2; each server that runs at the same time needs its own `net`.
    pub fn start(dir: &Path, squash: &str, net: u8) -> Ganesha {
        Ganesha::launch(dir, squash, net, false)
    }

    /// Like [`Ganesha::start`], for an export that answers only clients connecting from a
    /// reserved port (below 1024), as a `secure` export does.
    pub fn start_secure(dir: &Path, squash: &str, net: u8) -> Ganesha {
        Ganesha::launch(dir, squash, net, true)
    }

    fn launch(dir: &Path, squash: &str, net: u8, privileged_port: bool) -> Ganesha {
        let mut script = Command::new("bash")
            .arg(workspace_dir().join("tests/nfs/ganesha.sh"))
            .args(["--squash", squash, "--net", &format!("10.99.{net}")])
            .args(privileged_port.then_some("--privileged-port"))
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash runs");
        let stdin = script.stdin.take();
        let mut line = String::new();
        BufReader::new(script.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("ganesha.sh writes a line");
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields.first(),
            Some(&"ready"),
            "ganesha.sh did not start the server (see its stderr)"
        );
        Ganesha {
            script,
            stdin,
            ip: fields[1].to_string(),
            pid: fields[3].parse().expect("a pid"),
        }
    }

    /// The server's address.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// The export of `dir`, as MOUNT names it: ganesha exports the directory's real path.
    pub fn export(dir: &Path) -> String {
        let real = std::fs::canonicalize(dir).expect("the exported tree exists");
        real.to_str().expect("a UTF-8 export path").to_owned()
    }

    /// `nfs://SERVER/EXPORT` of `dir`.
    pub fn url(&self, dir: &Path) -> PathBuf {
        PathBuf::from(format!("nfs://{}{}", self.ip, Self::export(dir)))
    }

    /// Kills the server without warning, as a crash or a power cut would.
    pub fn kill(&self) {
        let status = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {} failed", self.pid);
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.script.wait();
    }
}
