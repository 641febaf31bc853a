//! End-to-end test support for scanjob: a kubelet stand-in and helpers that reach the real
//! control plane and S3 server that `tests/run` starts.

pub mod cluster;
pub mod helm;
pub mod kubelet;
pub mod operator;
