//! The phases of a run, each usable alone (one Kubernetes Job per phase) or chained by
//! [`local::run_local`] on one machine: plan → scan every shard → merge.

pub mod local;
pub mod merge;
pub mod plan;
pub mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use rustix::fd::OwnedFd;

use crate::error::{Error, Result};
use crate::walk::open_dir;

/// Opens the scan root as a directory descriptor, with a clear error when it is not one.
pub fn open_root(root: &Path) -> Result<(PathBuf, Arc<OwnedFd>)> {
    let bad = |reason: &str| Error::BadRoot {
        path: root.display().to_string(),
        reason: reason.to_string(),
    };
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("does not exist"),
        _ => bad(&e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("is not a directory"));
    }
    let abs = std::fs::canonicalize(root).map_err(|e| bad(&e.to_string()))?;
    let fd = open_dir(rustix::fs::CWD, abs.as_os_str().as_encoded_bytes())
        .map_err(|e| bad(&std::io::Error::from(e).to_string()))?;
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
