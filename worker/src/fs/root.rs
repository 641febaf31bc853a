//! The scan root and the name filters, shared by `plan` (which counts below the root) and
//! `scan` (which walks it): open the root as a directory descriptor, build the exclude globs.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use rustix::fd::OwnedFd;

use crate::error::{Error, Result};
use crate::fs::calls::open_dir;

/// Opens the scan root as a directory descriptor, with a clear error when it is not one.
/// A root that is missing, not a directory or not readable is bad input; any other failure
/// (EIO, a stale NFS handle, a timeout) may pass on retry.
pub fn open_root(root: &Path) -> Result<(PathBuf, Arc<OwnedFd>)> {
    let bad = |reason: &str| Error::BadRoot {
        path: root.display().to_string(),
        reason: reason.to_string(),
    };
    let fail = |e: std::io::Error| {
        use std::io::ErrorKind::{
            InvalidFilename, InvalidInput, NotADirectory, NotFound, PermissionDenied,
        };
        let symlink_loop = e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error());
        match e.kind() {
            NotFound => bad("does not exist"),
            NotADirectory | PermissionDenied | InvalidInput | InvalidFilename => {
                bad(&e.to_string())
            }
            _ if symlink_loop => bad(&e.to_string()),
            _ => Error::Io {
                what: format!("scan root {}", root.display()),
                source: e,
            },
        }
    };
    let meta = std::fs::metadata(root).map_err(fail)?;
    if !meta.is_dir() {
        return Err(bad("is not a directory"));
    }
    let abs = std::fs::canonicalize(root).map_err(fail)?;
    let fd = open_dir(rustix::fs::CWD, abs.as_os_str().as_encoded_bytes())
        .map_err(|e| fail(std::io::Error::from(e)))?;
    Ok((abs, Arc::new(fd)))
}

/// Name globs (`.snapshot`, `*.tmp`) matched against each entry's name.
pub fn exclude_set(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|e| Error::BadExclude {
            pattern: pattern.clone(),
            reason: e.kind().to_string(),
        })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| Error::BadExclude {
        pattern: patterns.join(","),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_no_retry_can_open_is_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let looped = tmp.path().join("loop");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        for root in [tmp.path().join("missing"), file, looped] {
            let error = open_root(&root).map(|_| ()).unwrap_err();
            assert!(matches!(error, Error::BadRoot { .. }), "{root:?}: {error}");
            assert_eq!(error.exit_code(), crate::error::EXIT_PERMANENT);
        }
    }
}
