//! The planner at reference scale, without creating files: reads a directory table
//! (`bench/reference_dirs.py` writes one shaped like the 16 M-file store), treats it as the
//! previous snapshot and reports balance and planning time for several shard counts.
//!
//!     cargo run --release --example plan_scale -- DIRS.tsv [16 64 256]

use std::io::BufRead;
use std::time::Instant;

use scanjob_worker::plan::shards::{assign_shards, imbalance};
use scanjob_worker::shard::{DirStats, DirTable};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: plan_scale DIRS.tsv [SHARDS...]");
    let mut shard_counts: Vec<u32> = args.map(|a| a.parse().expect("shard count")).collect();
    if shard_counts.is_empty() {
        shard_counts = vec![16, 64, 256];
    }
    let started = Instant::now();
    let mut table = DirTable::new();
    let file = std::io::BufReader::new(std::fs::File::open(&path).expect("open table"));
    for line in file.split(b'\n') {
        let line = line.expect("read table");
        let tab = line
            .iter()
            .rposition(|&b| b == b'\t')
            .expect("path<TAB>entries");
        let entries = std::str::from_utf8(&line[tab + 1..])
            .unwrap()
            .parse()
            .unwrap();
        table.insert(
            line[..tab].to_vec(),
            DirStats {
                entries,
                listed: true,
            },
        );
    }
    let total: u64 = table.values().map(|s| s.entries).sum();
    println!(
        "directories {}  entries {}  (table read in {:.2} s)",
        table.len(),
        total,
        started.elapsed().as_secs_f64()
    );
    println!(
        "| shards | max/mean entries | pieces | sliced dirs | listing amplification | planning s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for shards in shard_counts {
        let t = Instant::now();
        let plan = assign_shards(&table, shards, 1);
        let seconds = t.elapsed().as_secs_f64();
        let pieces: usize = plan
            .iter()
            .map(|a| a.subtrees.len() + a.files_only.len())
            .sum();
        let mut sliced = std::collections::BTreeMap::new();
        for a in &plan {
            for f in &a.files_only {
                if let Some(slice) = f.slice {
                    sliced.insert(f.path.0.clone(), slice.of);
                }
            }
        }
        // Every slice lists its whole directory: the extra directory entries read, over all.
        let extra: u64 = sliced
            .iter()
            .map(|(p, of)| table[p].entries * u64::from(of - 1))
            .sum();
        println!(
            "| {shards} | {:.3} | {pieces} | {} | {:.2} | {seconds:.2} |",
            imbalance(&plan),
            sliced.len(),
            (total + extra) as f64 / total as f64
        );
    }
}
