//! What the worker's and the cluster's tests share: trees made by `mktree.py` with their
//! ground truth ([`mktree`], [`nasty_tree`]), and `slowfs` mounts a test can slow down, freeze
//! or kill ([`SlowFs`]), and a real NFS server exporting a tree ([`Ganesha`]). Ground truth
//! never comes from scanjob itself.

mod nfs;
mod slowfs;
mod tree;

pub use nfs::Ganesha;
pub use slowfs::SlowFs;
pub use tree::{Tree, mktree, mktree_script, nasty_tree, workspace_dir};
