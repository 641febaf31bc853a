//! `scanjob join`: one partition of the merge's big joins (the first_seen join and the diff's),
//! over the rows whose path hashes to it, so that an Indexed Job of join pods shares the work
//! the one merge pod would otherwise do alone.
//!
//! It reads the run's shards and the previous snapshot ([`crate::night`]) and writes only its
//! partition's files below `runs/<run>/join/<index>/` and `_SUCCESS-<index>.json`
//! ([`JoinSuccess`]). The merge reads every partition's output ([`joined`]) or, when one is
//! missing or was made for another night, joins everything itself.

use object_store::PutMode;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::insights::{self, Inputs, InsightOptions, Joined};
use crate::night::{MergeOptions, Night, night_of, open_run};
use crate::schema::TOC_SCHEMA;
use crate::store::Location;
use crate::store::layout::{
    JoinSuccess, LAYOUT_FORMAT, ShardPlan, join_dir, join_success_path, table_subdir,
    toc_merged_dir,
};
use crate::store::previous::check_parquet_files;
use crate::store::writer::rows_of;

/// `scanjob join`: partition `index` of `count` of the merge's big joins (the first_seen join
/// and the diff's), over the rows whose path hashes to it ([`join_partition`]).
/// The merge finds every partition's `_SUCCESS-<i>.json` and derives the rest from them; a
/// partition retried writes its files again. Without a previous snapshot there is nothing to
/// join, and the partition says so.
pub async fn join_run(
    run_url: &str,
    options: &MergeOptions,
    index: u32,
    count: u32,
) -> Result<JoinSuccess> {
    let started = std::time::Instant::now();
    if index >= count {
        return Err(Error::BadPlan {
            url: run_url.to_string(),
            reason: format!("join partition {index} is out of range: there are {count}"),
        });
    }
    let (plan, output, run) = open_run(run_url).await?;
    let night = night_of(&output, &plan, &run, options).await?;
    let joined = join_partition(
        &output,
        &Inputs {
            run: &run,
            root: &plan.root,
            project_level: plan.settings.project_level,
            created: chrono::Utc::now(),
            scanned: plan.created,
            trends_files: Vec::new(),
            counts: &night.counts,
            toc_files: night.toc_files.clone(),
            missing_shards: night.shards.missing.clone(),
            previous: night.previous.as_ref(),
            carried: night.carried.clone(),
            hash_files: Vec::new(),
            hashing: None,
            joined: None,
        },
        &options.insights,
        (index, count),
        &join_dir(&run, index),
    )
    .await?;
    let success = JoinSuccess {
        format: LAYOUT_FORMAT,
        run: run.clone(),
        plan_id: plan.plan_id.clone(),
        index,
        count,
        previous_run: night.previous.as_ref().map(|p| p.run.clone()),
        missing_shards: night.shards.missing.clone(),
        toc_files: joined.toc_files,
        delta_files: joined.delta_files,
        seconds: started.elapsed().as_secs_f64(),
    };
    let path = join_success_path(&run, index);
    output
        .put_json(&path, &success, PutMode::Overwrite)
        .await
        .map_err(|source| Error::store(&output.url, &path, source))?;
    info!(
        run,
        index,
        count,
        rows = rows_of(&success.toc_files),
        seconds = success.seconds,
        "join partition written"
    );
    Ok(success)
}

/// The join partitions' output, when every partition of one count finished for this plan,
/// against this night's previous snapshot and with its missing shards; otherwise `None`, and
/// the merge joins everything itself.
pub async fn joined(output: &Location, plan: &ShardPlan, night: &Night) -> Result<Option<Joined>> {
    // A first night has nothing to join: the join pods wrote no partitions worth reading.
    if night.previous.is_none() {
        return Ok(None);
    }
    let Some(first) = output
        .get_json::<JoinSuccess>(&join_success_path(&plan.run, 0))
        .await?
    else {
        return Ok(None);
    };
    let matches = |s: &JoinSuccess, index: u32| {
        s.plan_id == plan.plan_id
            && s.index == index
            && s.count == first.count
            && s.previous_run == night.previous.as_ref().map(|p| p.run.clone())
            && s.missing_shards == night.shards.missing
    };
    let mut all = Joined::default();
    for index in 0..first.count {
        let s = match index {
            0 => Some(first.clone()),
            _ => {
                output
                    .get_json::<JoinSuccess>(&join_success_path(&plan.run, index))
                    .await?
            }
        };
        match s {
            Some(s) if matches(&s, index) => {
                all.toc_files.extend(s.toc_files);
                all.delta_files.extend(s.delta_files);
            }
            _ => {
                warn!(
                    run = plan.run,
                    index,
                    count = first.count,
                    "a join partition is missing or was made for another night: the merge \
                     joins every row itself"
                );
                return Ok(None);
            }
        }
    }
    let whose = format!("join partitions of run {}", plan.run);
    check_parquet_files(output, &all.toc_files, &whose).await?;
    check_parquet_files(output, &all.delta_files, &whose).await?;
    info!(
        run = plan.run,
        count = first.count,
        rows = rows_of(&all.toc_files),
        "using the join partitions"
    );
    Ok(Some(all))
}

/// One join partition of a merge (`scanjob join`): with a previous snapshot, the first_seen
/// join and the diff's join over the rows whose path hash falls in partition `index` of
/// `count`, written to the ToC's `merged/<pass>/` directories and to `delta_dir`. The merge
/// then derives everything else from them ([`Inputs::joined`](insights::Inputs::joined)).
async fn join_partition(
    location: &Location,
    inputs: &Inputs<'_>,
    options: &InsightOptions,
    (index, count): (u32, u32),
    delta_dir: &str,
) -> Result<Joined> {
    let Some(previous) = inputs.previous else {
        return Ok(Joined::default());
    };
    let mut options = options.clone();
    options.engine.partition = Some((index, count));
    let engine = insights::open_engine(location, inputs, &options).await?;
    engine
        .register_files("prev", &previous.toc_files, &TOC_SCHEMA)
        .await?;
    engine.split_passes().await?;
    // An earlier attempt's passes are written again.
    for pass in engine.passes() {
        location
            .delete_prefix(&format!(
                "{}/",
                table_subdir(&toc_merged_dir(inputs.run), pass)
            ))
            .await?;
    }
    location.delete_prefix(&format!("{delta_dir}/")).await?;
    let toc_files = insights::history::write_toc(
        &engine,
        &toc_merged_dir(inputs.run),
        inputs.carried.is_some(),
    )
    .await?;
    let delta_files = insights::history::write_delta(&engine, delta_dir).await?;
    Ok(Joined {
        toc_files,
        delta_files,
    })
}
