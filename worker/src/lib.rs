//! The scanjob scan engine: a directory tree in, a table of contents on object storage out.
//!
//! A run has five steps (docs/design.md §1), each a folder with its command at its top and
//! usable alone (one Kubernetes Job each) or chained on one machine by [`run`]:
//!
//! - [`plan`]: split the tree into balanced shards → `runs/<run>/plan.json`.
//! - [`scan`]: walk one shard ([`scan::walk`]) into Parquet parts → `runs/<run>/shards/<i>/`.
//! - [`hash`] (when asked for): read the night's duplicate candidates within a byte budget →
//!   `runs/<run>/hashes/<i>/`.
//! - [`join`] (when the merge's joins are shared by pods): one partition of the first_seen
//!   join and the diff's → `runs/<run>/join/<i>/`.
//! - [`merge`]: derive what the snapshot tells ([`insights`]: history, diffs, rollups;
//!   [`duplicates`]: duplicate files by stage) and publish it → `snapshots/<run>/`, each
//!   table's next Delta version, `latest.json`.
//!
//! Below the steps, what they share; imports run only downwards (`tests/layers.py` checks it):
//!
//! - [`night`]: what the join and the merge start from (the run's shards, the previous
//!   snapshot, the shrink guard).
//! - [`report`]: what a person reads (`report.html`, `scanjob report`), from [`summary`], the
//!   report's numbers.
//! - [`engine`]: the query engine (DataFusion over the output location's Parquet files).
//! - [`store`]: the output location; [`store::layout`] names every object in it,
//!   [`store::previous`] decides which snapshot a night compares with.
//! - [`fs`]: the scanned file system's calls and the operations budget they are charged to;
//!   [`shard`]: what a shard walks.
//! - [`schema`]: the tables' shapes; [`error`]; [`pathbytes`]; [`cgroup`]; [`termination`]:
//!   the message each pod leaves for the operator.
//!
//! It reads the scanned tree (never writes it) and reads and writes the output location; of
//! Kubernetes it knows only what the `scanjob-contract` crate declares.

pub mod cgroup;
pub mod duplicates;
pub mod engine;
pub mod error;
pub mod fs;
pub mod hash;
pub mod insights;
pub mod join;
pub mod merge;
pub mod night;
pub mod pathbytes;
pub mod plan;
pub mod report;
pub mod run;
pub mod scan;
pub mod schema;
pub mod shard;
pub mod store;
pub mod summary;
pub mod termination;

pub use error::{Error, Result};
