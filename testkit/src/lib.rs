//! What the worker's and the cluster's tests share: trees made by `mktree.py` with their
//! ground truth ([`mktree`], [`nasty_tree`]), and `slowfs` mounts a test can slow down, freeze
//! or kill ([`SlowFs`]). Ground truth never comes from scanjob itself.

mod slowfs;
mod tree;

pub use slowfs::SlowFs;
pub use tree::{Tree, mktree, mktree_script, nasty_tree, workspace_dir};
