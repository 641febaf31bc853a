//! The ScanJob operator: the `ScanJob` resource and the controller that turns each run into its
//! Jobs: plan, an Indexed scan, when asked for an Indexed hash and an Indexed join, and the
//! merge (docs/design.md §1–§2).
//!
//! Reconcile is a pipeline, one module per step: [`observe`] reads the Jobs and their pods'
//! termination messages into typed values; [`decide`] (pure) decides the next runs, Jobs and
//! events; [`status`] (pure) derives the phase and conditions shown; [`build`] (pure) turns a
//! decision into Job objects; [`apply`] writes them, the status and the Events. What the
//! worker's pods are told and say back is the `scanjob-contract` crate's.
//! [`schedule`] knows cron and time zones; [`allow`] holds the admin's grants of NFS exports;
//! [`controller`] wires it to the watches.
//!
//! It touches only the Kubernetes API (ScanJobs and their status, Jobs, pods read-only,
//! Events), never the scanned tree or the output location.

pub mod allow;
pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod observe;
pub mod schedule;
pub mod server;
pub mod status;
