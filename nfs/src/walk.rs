//! A recursive listing of an export: directories are taken breadth-first from a work queue, up
//! to N listed at once (each by one READDIRPLUS call per page), so N calls are in flight however
//! long the round trip. Every entry comes with its full path from the root, as bytes.
//!
//! A walk may start from several directories at once ([`Start`]), each either whole or with
//! only the entries a caller chooses from the start directory itself ([`Top::Chosen`]): how a
//! shard of a plan walks its pieces (whole subtrees, a directory's own entries, one slice of a
//! huge directory's names) with one pool of calls in flight.
//!
//! Errors about one directory or entry (ACCES, STALE, NOENT, a directory that kept changing)
//! are items of the listing; an error that means the server could not be asked ends the walk,
//! so a listing with a hole is never mistaken for a complete one.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::client::Client;
use crate::error::Error;
use crate::proto::{Attributes, DirEntry, FileHandle, FileType};

/// One object found by the walk.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path from the export's root, `/`-separated, without a leading `/`.
    pub path: Vec<u8>,
    /// None only when the server sent none and the entry is not a directory: a READ of it
    /// needs a LOOKUP first.
    pub handle: Option<FileHandle>,
    pub attributes: Attributes,
}

/// What the walk yields: an entry, or the error that stands in for a directory's entries (the
/// path of the directory) or for one entry (its own path; the directory's for a name the server
/// should never have sent).
#[derive(Debug)]
pub enum Item {
    Entry(Entry),
    Error { path: Vec<u8>, error: Error },
}

/// Totals of a finished walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub directories: u64,
    pub errors: u64,
}

/// Where a walk starts: a directory, its path from the export's root (the prefix of every
/// path the walk yields below it), and what the walk takes from it.
#[derive(Clone)]
pub struct Start {
    pub path: Vec<u8>,
    pub handle: FileHandle,
    pub top: Top,
}

/// What a walk takes from its start directory. Directories below an entered one are always
/// walked whole.
#[derive(Clone, Default)]
pub enum Top {
    /// Every entry; every subdirectory is entered.
    #[default]
    All,
    /// What `choose` says for each entry of the start directory. With `quiet`, an error about
    /// the start directory itself (it cannot be listed, it holds an invalid name) is not
    /// yielded: another walk of the same directory reports it.
    Chosen { choose: Arc<Choose>, quiet: bool },
}

/// Says what a walk does with an entry of its start directory, from its name, its path and
/// its attributes (None for an entry whose attributes could not be had: its error is yielded
/// unless the answer is [`Take::Leave`]).
pub type Choose = dyn Fn(&[u8], &[u8], Option<&Attributes>) -> Take + Send + Sync;

/// What a walk does with an entry of its start directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Not yielded, not entered.
    Leave,
    /// Yielded; a directory is not entered.
    Yield,
    /// Yielded, and a directory is walked whole.
    Enter,
}

/// Lists an export recursively with `in_flight` directory listings at once.
#[derive(Clone)]
pub struct Walker {
    client: Client,
    in_flight: usize,
    skip: Option<Arc<Skip>>,
}

/// Says from an entry's name that the walk leaves it out, and all below it.
type Skip = dyn Fn(&[u8]) -> bool + Send + Sync;

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker")
            .field("client", &self.client)
            .field("in_flight", &self.in_flight)
            .field("skip", &self.skip.is_some())
            .finish()
    }
}

impl Walker {
    pub fn new(client: Client) -> Walker {
        Walker {
            client,
            in_flight: 32,
            skip: None,
        }
    }

    /// Leaves out every entry whose name `skip` matches: it is not yielded, and a directory
    /// is not listed (e.g. `.snapshot`, whose listing would cost as much as the tree).
    pub fn skip(mut self, skip: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Walker {
        self.skip = Some(Arc::new(skip));
        self
    }

    /// How many directories are listed at once: about the calls in flight. The round trip
    /// divided by a call's service time is what keeps the server busy.
    pub fn in_flight(mut self, n: usize) -> Walker {
        self.in_flight = n.max(1);
        self
    }

    /// Walks the tree under `root` (not itself yielded), calling `visit` for every entry and
    /// error. Fails with the first error that is not about one object
    /// ([`Error::is_row`] false): the server gone, a timeout, a reply that does not parse.
    pub async fn walk(&self, root: &FileHandle, visit: impl FnMut(Item)) -> Result<Summary, Error> {
        let start = Start {
            path: Vec::new(),
            handle: root.clone(),
            top: Top::All,
        };
        self.walk_from(vec![start], visit).await
    }

    /// Walks from every one of `starts` at once (none of them is itself yielded), sharing the
    /// calls in flight, as [`Walker::walk`] does from one root.
    pub async fn walk_from(
        &self,
        starts: Vec<Start>,
        mut visit: impl FnMut(Item),
    ) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut queue: VecDeque<Start> = starts.into();
        let mut listing = JoinSet::new();
        loop {
            while listing.len() < self.in_flight {
                let Some(start) = queue.pop_front() else {
                    break;
                };
                let client = self.client.clone();
                listing.spawn(async move {
                    let entries = list(&client, &start.handle).await;
                    (start.path, start.top, entries)
                });
            }
            let Some(done) = listing.join_next().await else {
                return Ok(summary);
            };
            let (dir_path, top, entries) = match done {
                Ok(done) => done,
                // A listing task panicked or was cancelled: a bug, never the server's input.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            summary.directories += 1;
            let (choose, quiet) = match &top {
                Top::All => (None, false),
                Top::Chosen { choose, quiet } => (Some(choose), *quiet),
            };
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) if error.is_row() => {
                    if !quiet {
                        summary.errors += 1;
                        visit(Item::Error {
                            path: dir_path,
                            error,
                        });
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            for entry in entries {
                let (name, found) = entry;
                if name.is_empty() {
                    // An invalid name, reported at its directory.
                    if let Err(error) = found {
                        if !error.is_row() {
                            return Err(error);
                        }
                        if !quiet {
                            summary.errors += 1;
                            visit(Item::Error {
                                path: dir_path.clone(),
                                error,
                            });
                        }
                    }
                    continue;
                }
                if self.skip.as_ref().is_some_and(|skip| skip(&name)) {
                    continue;
                }
                let path = join(&dir_path, &name);
                let take = match choose {
                    None => Take::Enter,
                    Some(choose) => choose(&name, &path, found.as_ref().ok().map(|(a, _)| a)),
                };
                if take == Take::Leave {
                    continue;
                }
                match found {
                    Ok((attributes, handle)) => {
                        if take == Take::Enter
                            && attributes.file_type == FileType::Directory
                            && let Some(handle) = &handle
                        {
                            queue.push_back(Start {
                                path: path.clone(),
                                handle: handle.clone(),
                                top: Top::All,
                            });
                        }
                        summary.entries += 1;
                        visit(Item::Entry(Entry {
                            path,
                            handle,
                            attributes,
                        }));
                    }
                    Err(error) if error.is_row() => {
                        summary.errors += 1;
                        visit(Item::Error { path, error });
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    }
}

/// A name (empty for one that was invalid) and what is known of the entry.
type Listed = (Vec<u8>, Result<(Attributes, Option<FileHandle>), Error>);

/// One directory's entries, each completed where READDIRPLUS left something out: LOOKUP when
/// the attributes (or a subdirectory's handle) are missing, GETATTR when only attributes are.
async fn list(client: &Client, dir: &FileHandle) -> Result<Vec<Listed>, Error> {
    let entries = client.readdirplus(dir).await?;
    let mut listed = Vec::with_capacity(entries.len());
    for DirEntry {
        name,
        attributes,
        handle,
        ..
    } in entries
    {
        if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
            let error = Error::InvalidName {
                name: String::from_utf8_lossy(&name).into_owned(),
            };
            // Reported at the directory's path: the name cannot be part of one.
            listed.push((Vec::new(), Err(error)));
            continue;
        }
        let found = match (attributes, handle) {
            (Some(a), Some(h)) => Ok((a, Some(h))),
            (Some(a), None) if a.file_type != FileType::Directory => Ok((a, None)),
            (None, Some(h)) => client.getattr(&h).await.map(|a| (a, Some(h))),
            (_, None) => match client.lookup(dir, &name).await {
                Ok((h, Some(a))) => Ok((a, Some(h))),
                Ok((h, None)) => client.getattr(&h).await.map(|a| (a, Some(h))),
                Err(e) => Err(e),
            },
        };
        listed.push((name, found));
    }
    Ok(listed)
}

/// `dir/name`, or `name` alone at the root.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        path.extend_from_slice(dir);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
