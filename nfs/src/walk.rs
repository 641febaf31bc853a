//! A recursive listing of an export: directories are taken breadth-first from a work queue, up
//! to N listed at once (each by one READDIRPLUS call per page), so N calls are in flight however
//! long the round trip. Every entry comes with its full path from the root, as bytes.
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
    pub async fn walk(
        &self,
        root: &FileHandle,
        mut visit: impl FnMut(Item),
    ) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let mut queue: VecDeque<(Vec<u8>, FileHandle)> = VecDeque::new();
        queue.push_back((Vec::new(), root.clone()));
        let mut listing = JoinSet::new();
        loop {
            while listing.len() < self.in_flight {
                let Some((path, dir)) = queue.pop_front() else {
                    break;
                };
                let client = self.client.clone();
                listing.spawn(async move {
                    let entries = list(&client, &dir).await;
                    (path, entries)
                });
            }
            let Some(done) = listing.join_next().await else {
                return Ok(summary);
            };
            let (dir_path, entries) = match done {
                Ok(done) => done,
                // A listing task panicked or was cancelled: a bug, never the server's input.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            summary.directories += 1;
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) if error.is_row() => {
                    summary.errors += 1;
                    visit(Item::Error {
                        path: dir_path,
                        error,
                    });
                    continue;
                }
                Err(error) => return Err(error),
            };
            for entry in entries {
                let (name, found) = entry;
                if !name.is_empty() && self.skip.as_ref().is_some_and(|skip| skip(&name)) {
                    continue;
                }
                let path = if name.is_empty() {
                    dir_path.clone()
                } else {
                    join(&dir_path, &name)
                };
                match found {
                    Ok((attributes, handle)) => {
                        if attributes.file_type == FileType::Directory
                            && let Some(handle) = &handle
                        {
                            queue.push_back((path.clone(), handle.clone()));
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
