//! The file system being scanned, as every step that touches it sees it: the plan's top-level
//! count, the scan's walk and the hash step's reads all go through these calls and through one
//! operations budget.
//!
//! - [`calls`]: the fd-relative system calls (open a directory, `statx` an entry) and which
//!   errors mean the file system itself failed.
//! - [`entry`]: one entry's metadata, as the ToC's row takes it.
//! - [`identity`]: the `dev` column, the same on every node and night (a mount's place under
//!   the root, not the kernel's device number).
//! - [`politeness`]: the operations budget and latency guard every call is charged to.
//! - [`root`]: opening the scan root and the exclude globs.
//! - [`source`]: which tree a root names, a mounted path or an `nfs://` export.
//! - [`nfs`]: an export read by the user-space NFSv3 client: its calls charged to the same
//!   budget, its attributes as [`entry::EntryMeta`], its errors as errnos.
//!
//! It reads the tree and never writes it; it knows nothing of the output location.

pub mod calls;
pub mod entry;
pub mod identity;
pub mod nfs;
pub mod politeness;
pub mod root;
pub mod source;
