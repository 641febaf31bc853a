//! The scanjob scan engine.
//!
//! A run turns a directory tree into a table of contents on object storage in three phases
//! (docs/design.md §1): [`phase::plan`] splits the tree into balanced shards ([`plan`]),
//! [`phase::scan`] walks one shard ([`walk`]) into Parquet parts ([`writer`]) and
//! [`phase::merge`] commits the snapshot with what it tells ([`insights`]: history, diffs,
//! rollups, duplicates, the report). [`layout`] is the contract between them and readers;
//! [`schema`] is the table's shape; [`store`] resolves output URLs; [`report`] makes the
//! termination message the operator reads from each pod.
//!
//! It reads the scanned tree (never writes it) and reads and writes the output location; of
//! Kubernetes it knows only what the `scanjob-contract` crate declares.

pub mod cgroup;
pub mod error;
pub mod insights;
pub mod layout;
pub mod pathbytes;
pub mod phase;
pub mod plan;
pub mod politeness;
pub mod previous;
pub mod report;
pub mod rows;
pub mod schema;
pub mod store;
pub mod walk;
pub mod writer;

pub use error::{Error, Result};
