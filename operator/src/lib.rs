//! The ScanJob operator: the `ScanJob` resource and the controller that turns each run into a
//! plan Job, an Indexed scan Job and a merge Job (docs/design.md §1–§2).
//!
//! Reconcile is a pipeline, one module per step: [`observe`] reads the Jobs and their pods'
//! termination messages; [`decide`] (pure) decides the next status, Jobs and events; [`build`]
//! (pure) turns a decision into Job objects; [`apply`] writes them, the status and the Events.
//! [`schedule`] knows cron and time zones; [`controller`] wires it to the watches.

pub mod apply;
pub mod build;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod error;
pub mod metrics;
pub mod observe;
pub mod schedule;
pub mod server;
