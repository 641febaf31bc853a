//! The previous snapshot, decided in one place for every step: the one the plan was balanced
//! by, else the one `latest.json` names if it is older than this run, of the same root, of a
//! schema this scanjob reads ([`previous_snapshot`]); and what is read back from it (the
//! per-directory entry counts the planner balances by, [`directory_table`]).

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use datafusion::arrow::compute::cast;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
// The object_store reader is deprecated upstream in favour of a hand-written `AsyncFileReader`;
// it is still the tested path for ranged reads from any store, so it stays until 60.x replaces it.
use parquet::arrow::ProjectionMask;
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use crate::error::{Error, Result};
use crate::pathbytes::parent_of;
use crate::schema::SCHEMA_VERSION;
use crate::shard::{DirStats, DirTable};
use crate::store::Location;
use crate::store::layout::{LATEST_PATH, SnapshotManifest, manifest_path};
use crate::store::writer::PartFile;
use tracing::{info, warn};

/// The snapshot `latest.json` points at, if there is one.
pub async fn latest_manifest(location: &Location) -> Result<Option<SnapshotManifest>> {
    let Some(latest) = location.latest().await? else {
        return Ok(None);
    };
    let mut manifest = location
        .manifest(&latest.run)
        .await?
        .ok_or_else(|| Error::Corrupt {
            what: format!("{}/{LATEST_PATH}", location.url),
            reason: format!("points at {} which does not exist", latest.manifest),
        })?;
    // Another engine may have rewritten the night's files since (the table is the truth).
    let toc = crate::store::delta::TOC_TABLE;
    match crate::store::delta::night_files(location, toc, &latest.run, &manifest.toc_files).await? {
        Some(files) => manifest.toc_files = files,
        None => return Ok(None),
    }
    Ok(Some(manifest))
}

/// Direct entry counts of every directory in `manifest`'s ToC, read from its `path` and `kind`
/// columns only.
#[allow(deprecated)]
pub async fn directory_table(location: &Location, manifest: &SnapshotManifest) -> Result<DirTable> {
    let mut table = DirTable::new();
    table.insert(
        Vec::new(),
        DirStats {
            entries: 0,
            listed: true,
        },
    );
    for file in &manifest.toc_files {
        let parquet_err = |source| Error::Parquet {
            path: file.path.clone(),
            source,
        };
        let reader = ParquetObjectReader::new(location.store.clone(), location.path(&file.path))
            .with_file_size(file.bytes);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(parquet_err)?;
        let columns = ["path", "kind"].map(|name| {
            builder
                .parquet_schema()
                .columns()
                .iter()
                .position(|c| c.name() == name)
        });
        let [Some(path_col), Some(kind_col)] = columns else {
            return Err(Error::Corrupt {
                what: file.path.clone(),
                reason: "no path/kind columns".into(),
            });
        };
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [path_col, kind_col]);
        let mut stream = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(parquet_err)?;
        while let Some(batch) = stream.try_next().await.map_err(parquet_err)? {
            // As scanjob writes them (binary paths, dictionary kinds), or as another engine
            // rewrote the files (an OPTIMIZE may write plain strings).
            let as_type = |i: usize, to: &DataType| {
                cast(batch.column(i), to).map_err(|e| Error::Corrupt {
                    what: format!("{}/{}", location.url, file.path),
                    reason: format!("its path and kind columns do not read as the ToC's: {e}"),
                })
            };
            let (paths, kinds) = (as_type(0, &DataType::Binary)?, as_type(1, &DataType::Utf8)?);
            let (paths, kinds) = (paths.as_binary::<i32>(), kinds.as_string::<i32>());
            for (i, path) in paths.iter().enumerate() {
                let Some(path) = path else { continue };
                let parent = parent_of(path);
                match table.get_mut(parent) {
                    Some(stats) => stats.entries += 1,
                    None => {
                        table.insert(
                            parent.to_vec(),
                            DirStats {
                                entries: 1,
                                listed: true,
                            },
                        );
                    }
                }
                if kinds.is_valid(i) && kinds.value(i) == "dir" {
                    table.entry(path.to_vec()).or_insert(DirStats {
                        entries: 0,
                        listed: true,
                    });
                }
            }
        }
    }
    Ok(table)
}

/// The snapshot a night of run `run` over `root` compares with, the one rule every step uses
/// (the plan balances by it, the hash step takes its cache from it, the join and the merge
/// carry history from it): the snapshot `planned` names (the one the run's plan was balanced
/// by), else the one `latest.json` names; either only if it is older than `run`. A snapshot of
/// another root is none (no history). A named snapshot that does not exist, or one of a newer
/// schema version than this scanjob's, is an error with what to do, so that no step builds on
/// a broken or unreadable previous snapshot.
pub async fn previous_snapshot(
    location: &Location,
    root: &str,
    run: &str,
    planned: Option<&str>,
) -> Result<Option<SnapshotManifest>> {
    let candidate = match planned {
        Some(previous) => Some(previous.to_string()),
        None => location.latest().await?.map(|latest| latest.run),
    };
    let Some(previous) = candidate.filter(|p| p.as_str() < run) else {
        info!(run, "no previous snapshot: first_seen starts now, no diff");
        return Ok(None);
    };
    let path = manifest_path(&previous);
    let what = format!("previous snapshot {}/{path}", location.url);
    let Some(mut manifest) = location.manifest(&previous).await? else {
        return Err(Error::Corrupt {
            what,
            reason: "does not exist (removed by hand?); point latest.json at a snapshot that \
                     exists, or remove latest.json to start history over"
                .into(),
        });
    };
    if manifest.root != root {
        info!(
            run,
            previous, "previous snapshot is of another root: no history"
        );
        return Ok(None);
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(Error::Corrupt {
            what,
            reason: format!(
                "has schema version {}, newer than this scanjob's {SCHEMA_VERSION}; \
                 merge with the scanjob that wrote it",
                manifest.schema_version
            ),
        });
    }
    // Version 2's unsigned integers and nanoseconds are read as version 3's types (the
    // query engine casts them to the ToC schema), so its first_seen is carried.
    if manifest.schema_version < 2 {
        warn!(
            previous,
            schema_version = manifest.schema_version,
            "previous snapshot has an older schema version: its first_seen values are the \
             times it was scanned, so history starts there"
        );
    }
    // Another engine may have rewritten the night's files since (the table is the truth).
    let toc = crate::store::delta::TOC_TABLE;
    let Some(files) =
        crate::store::delta::night_files(location, toc, &previous, &manifest.toc_files).await?
    else {
        return Ok(None);
    };
    manifest.toc_files = files;
    Ok(Some(manifest))
}

/// Reads the footer of every file: a missing or corrupt file, or one whose row count is not
/// the one listed for it, stops the merge naming it, before anything of the new snapshot is
/// written.
#[allow(deprecated)]
pub async fn check_parquet_files(output: &Location, files: &[PartFile], whose: &str) -> Result<()> {
    for file in files {
        let what = format!("{whose}: {}/{}", output.url, file.path);
        let meta = match output.store.head(&output.path(&file.path)).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Corrupt {
                    what,
                    reason: "is listed but does not exist".into(),
                });
            }
            Err(source) => return Err(Error::store(&output.url, &file.path, source)),
        };
        let reader = ParquetObjectReader::new(output.store.clone(), output.path(&file.path))
            .with_file_size(meta.size);
        let rows = match ParquetRecordBatchStreamBuilder::new(reader).await {
            Ok(builder) => builder.metadata().file_metadata().num_rows(),
            Err(e) => {
                return Err(Error::Corrupt {
                    what,
                    reason: format!("not a readable Parquet file: {e}"),
                });
            }
        };
        if u64::try_from(rows) != Ok(file.rows) {
            return Err(Error::Corrupt {
                what,
                reason: format!("holds {rows} rows where its listing says {}", file.rows),
            });
        }
    }
    Ok(())
}
