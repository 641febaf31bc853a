//! Reading an earlier snapshot back: the per-directory entry counts the planner balances by.

use arrow_array::cast::AsArray;
use arrow_array::types::Int8Type;
use futures::TryStreamExt;
// The object_store reader is deprecated upstream in favour of a hand-written `AsyncFileReader`;
// it is still the tested path for ranged reads from any store, so it stays until 60.x replaces it.
use parquet::arrow::ProjectionMask;
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};

use crate::error::{Error, Result};
use crate::pathbytes::parent_of;
use crate::plan::shards::{DirStats, DirTable};
use crate::store::Location;
use crate::store::layout::{LATEST_PATH, SnapshotManifest};

/// The snapshot `latest.json` points at, if there is one.
pub async fn latest_manifest(location: &Location) -> Result<Option<SnapshotManifest>> {
    let Some(latest) = location.latest().await? else {
        return Ok(None);
    };
    let manifest = location
        .manifest(&latest.run)
        .await?
        .ok_or_else(|| Error::Corrupt {
            what: format!("{}/{LATEST_PATH}", location.url),
            reason: format!("points at {} which does not exist", latest.manifest),
        })?;
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
            let paths = batch.column(0).as_binary::<i32>();
            let kinds = batch.column(1).as_dictionary::<Int8Type>();
            let kind_values = kinds.values().as_string::<i32>();
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
                let key = kinds.keys().value(i) as usize;
                if kind_values.value(key) == "dir" {
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
