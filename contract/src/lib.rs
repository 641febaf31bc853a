//! What the operator and the worker agree on, declared once: the worker's command lines as the
//! operator writes them ([`args`]), its exit codes and termination messages ([`exit`],
//! [`termination`]), the run ids and object paths both name ([`layout`]), and how both show
//! a byte count ([`units`]).
//!
//! Only plain data and serde: no Kubernetes, no Arrow, no object store. Both sides depend on
//! this crate, so a change here is seen by both compilers and both test suites.

pub mod args;
pub mod exit;
pub mod layout;
pub mod termination;
pub mod units;
