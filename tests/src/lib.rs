//! End-to-end test support for scanjob: helpers that reach the real control plane, node and S3
//! server that `tests/run` starts.

pub mod cluster;
pub mod helm;
pub mod node;
pub mod operator;
