//! The scanjob scan engine: a directory tree in, a table of contents on object storage out.
//!
//! A run has three steps, four with hashing (docs/design.md §1), each a folder with its command at its top and
//! usable alone (one Kubernetes Job each) or chained on one machine by [`run`]:
//!
//! - [`plan`]: split the tree into balanced shards → `runs/<run>/plan.json`.
//! - [`scan`]: walk one shard ([`scan::walk`]) into Parquet parts → `runs/<run>/shards/<i>/`.
//! - [`hash`] (when asked for): read the night's duplicate candidates within a byte budget →
//!   `runs/<run>/hashes/<i>/`.
//! - [`merge`]: check the shards, derive what the snapshot tells ([`insights`]: history, diffs,
//!   rollups, duplicates) and publish it → `snapshots/<run>/`, `latest.json`.
//!
//! [`report`] is what a person reads (`summary.json`, `report.html`, `scanjob report`);
//! [`store`] is the output location, and [`store::layout`] names every object in it;
//! [`schema`] is the table's shape; [`termination`] is the message each pod leaves for the
//! operator.
//!
//! It reads the scanned tree (never writes it) and reads and writes the output location; of
//! Kubernetes it knows only what the `scanjob-contract` crate declares.

pub mod cgroup;
pub mod error;
pub mod hash;
pub mod insights;
pub mod merge;
pub mod pathbytes;
pub mod plan;
pub mod report;
pub mod run;
pub mod scan;
pub mod schema;
pub mod store;
pub mod termination;

pub use error::{Error, Result};
