//! Run ids and the object paths, relative to the output URL, that more than one program names.
//! The full object layout, and the documents stored at these paths, are the worker's
//! `layout` module.

/// The folder of every run's plan and shards.
pub const RUNS_DIR: &str = "runs";

/// Where a run's plan and shards live: `runs/<run>`.
pub fn run_dir(run: &str) -> String {
    format!("{RUNS_DIR}/{run}")
}

/// The plan's file name inside [`run_dir`].
pub const PLAN_FILE: &str = "plan.json";

/// `runs/<run>/plan.json`.
pub fn plan_path(run: &str) -> String {
    format!("{}/{PLAN_FILE}", run_dir(run))
}

/// `runs/<run>/shards/<index>`.
pub fn shard_dir(run: &str, index: u32) -> String {
    format!("{}/shards/{index}", run_dir(run))
}

/// `runs/<run>/shards/<index>/_SUCCESS.json`, written after every other file of the shard.
pub fn success_path(run: &str, index: u32) -> String {
    format!("{}/_SUCCESS.json", shard_dir(run, index))
}

/// Where a published snapshot lives: `snapshots/<run>`.
pub fn snapshot_dir(run: &str) -> String {
    format!("snapshots/{run}")
}

/// `snapshots/<run>/manifest.json`: a snapshot exists once this is written.
pub fn manifest_path(run: &str) -> String {
    format!("{}/manifest.json", snapshot_dir(run))
}

/// The pointer to the newest snapshot.
pub const LATEST_PATH: &str = "latest.json";

/// `path` below the output URL `output` (with or without a trailing slash).
pub fn url_of(output: &str, path: &str) -> String {
    format!("{}/{path}", output.trim_end_matches('/'))
}

/// Splits `<output>/runs/<run>[/<file>]` into the output URL and the run id: the inverse of
/// [`url_of`] with [`run_dir`] (or [`plan_path`] when `file` is [`PLAN_FILE`]).
pub fn split_run_url(url: &str, file: Option<&str>) -> Option<(String, String)> {
    let mut rest = url.trim_end_matches('/');
    if let Some(file) = file {
        rest = rest.strip_suffix(file)?.strip_suffix('/')?;
    }
    let (base, run) = rest.rsplit_once('/')?;
    let base = base.strip_suffix(RUNS_DIR)?.strip_suffix('/')?;
    Some((base.to_string(), run.to_string()))
}

/// A run id from a (scheduled) time: sortable, and the same for the same schedule slot, so a
/// restarted controller finds the run it started instead of starting another.
pub fn run_id(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%dt%H%M%Sz").to_string()
}

/// Whether `run` looks like an id we would generate or accept (safe as one path segment).
pub fn valid_run_id(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 63
        && run
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_urls_split_into_output_and_run() {
        assert_eq!(
            split_run_url(
                "s3://b/toc/runs/20261123t010000z/plan.json",
                Some(PLAN_FILE)
            ),
            Some(("s3://b/toc".into(), "20261123t010000z".into()))
        );
        assert_eq!(
            split_run_url("/data/toc/runs/r1/", None),
            Some(("/data/toc".into(), "r1".into()))
        );
        assert_eq!(
            split_run_url("/data/toc/r1/plan.json", Some(PLAN_FILE)),
            None
        );
    }

    #[test]
    fn the_urls_the_operator_builds_split_back_into_what_it_built_them_from() {
        let run = "20261123t010000z";
        for output in ["s3://toc/isilon", "s3://toc/isilon/", "file:///data/toc"] {
            let base = output.trim_end_matches('/').to_string();
            assert_eq!(
                split_run_url(&url_of(output, &plan_path(run)), Some(PLAN_FILE)),
                Some((base.clone(), run.into()))
            );
            assert_eq!(
                split_run_url(&url_of(output, &run_dir(run)), None),
                Some((base, run.into()))
            );
        }
    }

    #[test]
    fn run_ids_sort_by_time_and_are_valid() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let a = run_id(at("2026-11-23T01:00:00Z"));
        let b = run_id(at("2026-11-24T00:30:00Z"));
        assert_eq!(a, "20261123t010000z");
        assert!(a < b);
        assert!(valid_run_id(&a));
        assert!(!valid_run_id("../x"));
    }
}
