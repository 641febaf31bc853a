//! The termination message the worker leaves for the operator (its types are the contract
//! crate's), made from what each phase produced.

pub use scanjob_contract::termination::{
    Failure, Hashed, JoinedPart, MAX_TERMINATION_MESSAGE_BYTES, Merged, PhaseResult, Planned,
    Scanned, TerminationMessage,
};

use crate::error::{EXIT_RETRYABLE, Error};
use crate::store::layout::{ShardPlan, ShardSuccess, SnapshotManifest};

/// `scanjob plan` wrote `plan` at `url`.
pub fn planned(plan: &ShardPlan, url: &str) -> Planned {
    Planned {
        run: plan.run.clone(),
        plan: url.to_string(),
        shards: plan.shards.len() as u32,
        balanced_by: plan.balanced_by.clone(),
        estimated_imbalance: plan.estimated_imbalance,
    }
}

/// `scanjob scan` committed a shard.
pub fn scanned(success: &ShardSuccess) -> Scanned {
    Scanned {
        run: success.run.clone(),
        index: success.index,
        entries: success.counts.entries,
        files: success.counts.files,
        directories: success.counts.directories,
        bytes: success.counts.bytes,
        errors: success.counts.errors,
    }
}

/// `scanjob merge` (or `run`) published `manifest` at `url`.
pub fn merged(manifest: &SnapshotManifest, url: &str) -> Merged {
    Merged {
        run: manifest.run.clone(),
        snapshot: url.to_string(),
        files: manifest.counts.files,
        directories: manifest.counts.directories,
        bytes: manifest.counts.bytes,
        errors: manifest.counts.errors,
        missing_shards: manifest.missing_shards.clone(),
        missing_shards_omitted: 0,
    }
}

/// Any command failed with `error`.
pub fn failure(error: &Error) -> Failure {
    Failure {
        error: error.label().to_string(),
        message: error.chain(),
        retryable: error.exit_code() == EXIT_RETRYABLE,
    }
}
