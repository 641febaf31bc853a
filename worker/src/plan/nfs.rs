//! The top-level count of an NFS export, for a first night's plan of several shards: the same
//! breadth-first count as a mounted root's ([`super::shards::count_top_levels`]), each
//! directory one READDIRPLUS listing (a call per page), many listed at once.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use futures::StreamExt;
use globset::GlobSet;
use scanjob_nfs::{Client, DirEntry, FileHandle, FileType};

use crate::pathbytes::join;
use crate::plan::shards::unlisted_estimate;
use crate::shard::{DirStats, DirTable};

/// Lists the export's top levels breadth-first until `max_dirs` directories are known, with
/// `in_flight` listings at once. Returns the table (the directories past the budget unlisted)
/// and the mean entries of a listed directory below the root, the estimate for the unlisted
/// ones. A directory the server refuses to list is an empty leaf: the scan reports it. An
/// error that is not about one directory (the server gone) fails the count.
pub async fn count_top_levels(
    client: &Client,
    max_dirs: usize,
    exclude: Option<&GlobSet>,
    in_flight: usize,
) -> Result<(DirTable, u64), scanjob_nfs::Error> {
    let mut table = DirTable::new();
    let mut level: Vec<(Vec<u8>, FileHandle)> = vec![(Vec::new(), client.root().clone())];
    while !level.is_empty() {
        let room = max_dirs.saturating_sub(table.len());
        for (path, _) in level.split_off(level.len().min(room)) {
            table.entry(path).or_default();
        }
        // In `level`'s order, so the same tree gives the same plan.
        let listings: Vec<_> =
            futures::stream::iter(level.into_iter().map(|(path, dir)| async move {
                let listed = client.readdirplus(&dir).await;
                (path, listed)
            }))
            .buffered(in_flight.max(1))
            .collect()
            .await;
        let mut next = Vec::new();
        for (path, listed) in listings {
            let entries = match listed {
                Ok(entries) => entries,
                Err(error) if error.is_row() => Vec::new(),
                Err(error) => return Err(error),
            };
            let mut count = 0u64;
            for DirEntry {
                name,
                attributes,
                handle,
                ..
            } in entries
            {
                if exclude.is_some_and(|g| g.is_match(OsStr::from_bytes(&name))) {
                    continue;
                }
                count += 1;
                if let (Some(attributes), Some(handle)) = (attributes, handle)
                    && attributes.file_type == FileType::Directory
                    && !name.contains(&b'/')
                {
                    next.push((join(&path, &name), handle));
                }
            }
            table.insert(
                path,
                DirStats {
                    entries: count,
                    listed: true,
                },
            );
        }
        level = next;
    }
    let estimate = unlisted_estimate(&table);
    Ok((table, estimate))
}
