//! The memory limit of the cgroup this process runs in: on Kubernetes, the pod's
//! `resources.limits.memory`. The merge sizes its query memory pool from it.

use std::path::{Path, PathBuf};

/// This process's cgroup memory limit in bytes, if it has one.
pub fn memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    memory_limit_in(Path::new("/sys/fs/cgroup"), &own)
}

/// The memory limit of the cgroup that `self_cgroup` (the text of `/proc/self/cgroup`) names,
/// under the cgroup file system mounted at `root`: cgroup v2's `memory.max` or v1's
/// `memory.limit_in_bytes`, in the process's own cgroup or, where that is not visible (a
/// container's cgroup namespace shows it as the root), at the mount's root.
pub fn memory_limit_in(root: &Path, self_cgroup: &str) -> Option<u64> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for line in self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            candidates.push(root.join(path).join("memory.max"));
            candidates.push(root.join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(root.join("memory").join(path).join("memory.limit_in_bytes"));
            candidates.push(root.join("memory").join("memory.limit_in_bytes"));
        }
    }
    candidates
        .iter()
        .find_map(|file| parse_limit(&std::fs::read_to_string(file).ok()?))
}

/// "max" (v2) and v1's page-rounded 2^63 mean no limit.
fn parse_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 60).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_limit_of_the_own_cgroup() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "kubepods/pod1/c1/memory.max", "536870912\n");
        write(root.path(), "memory.max", "max\n");
        let own = "0::/kubepods/pod1/c1\n";
        assert_eq!(memory_limit_in(root.path(), own), Some(536870912));
    }

    #[test]
    fn v2_namespaced_and_unlimited() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "memory.max", "1073741824\n");
        assert_eq!(memory_limit_in(root.path(), "0::/\n"), Some(1 << 30));
        write(root.path(), "memory.max", "max\n");
        assert_eq!(memory_limit_in(root.path(), "0::/\n"), None);
    }

    #[test]
    fn v1_limit_and_v1_no_limit() {
        let root = tempfile::tempdir().unwrap();
        let own = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        write(
            root.path(),
            "memory/process_api/abc/memory.limit_in_bytes",
            "2147483648\n",
        );
        assert_eq!(memory_limit_in(root.path(), own), Some(2 << 30));
        write(
            root.path(),
            "memory/process_api/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            root.path(),
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(memory_limit_in(root.path(), own), None);
    }

    #[test]
    fn no_cgroup_files_no_limit() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(memory_limit_in(root.path(), "0::/x\n4:memory:/y\n"), None);
        assert_eq!(memory_limit_in(root.path(), ""), None);
    }
}
