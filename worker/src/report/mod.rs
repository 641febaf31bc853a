//! What a person reads about a snapshot: its numbers (`summary.json`, [`crate::summary`]) as
//! the terminal shows them ([`text`]), one self-contained page (`report.html`, [`html`]), the
//! owner and group names ([`owners`]), and the `scanjob report` command, which reads them back
//! from the output location. It reads the
//! store; the merge is the only step that writes what is here.

pub mod html;
pub mod owners;
pub mod text;

use crate::error::{Error, Result};
use crate::store::Location;
use crate::store::layout::{LATEST_PATH, SnapshotManifest, manifest_path};
use crate::store::previous::latest_manifest;
use crate::summary::Summary;

/// The manifest and summary of the snapshot `run`, or of the one `latest.json` names.
pub async fn load_summary(
    location: &Location,
    run: Option<&str>,
) -> Result<(SnapshotManifest, Summary)> {
    let manifest = match run {
        Some(run) => {
            let path = manifest_path(run);
            location
                .manifest(run)
                .await?
                .ok_or_else(|| Error::Corrupt {
                    what: format!("{}/{path}", location.url),
                    reason: "does not exist".into(),
                })?
        }
        None => latest_manifest(location)
            .await?
            .ok_or_else(|| Error::Corrupt {
                what: format!("{}/{}", location.url, LATEST_PATH),
                reason: "does not exist: no snapshot has been published here".into(),
            })?,
    };
    let Some(summary_path) = &manifest.summary else {
        return Err(Error::Corrupt {
            what: format!("{}/{}", location.url, manifest_path(&manifest.run)),
            reason: "has no summary (written by a scanjob before reports existed)".into(),
        });
    };
    let summary = location
        .get_json::<Summary>(summary_path)
        .await?
        .ok_or_else(|| Error::Corrupt {
            what: format!("{}/{summary_path}", location.url),
            reason: "named by the manifest but does not exist".into(),
        })?;
    Ok((manifest, summary))
}
