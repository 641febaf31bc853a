//! The planner on the worst shape a store gives it: one top-level subtree holding most of the
//! files and, inside it, one directory holding an eighth of them by itself. Shards must stay
//! within 15 % of the mean, and the huge directory must be split between shards, not land whole
//! in one. (`bench/run.sh` shows the same at 16 M files; this is a tenth of that, built in
//! memory from a fixed seed.)

use std::collections::{BTreeMap, BTreeSet};

use scanjob_worker::plan::shards::{assign_shards, imbalance};
use scanjob_worker::shard::{DirStats, DirTable};

/// A deterministic pseudo-random sequence in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const FILES: u64 = 1_600_000;
const DIRS: usize = 51_000;
const BIG_SUBTREE: u64 = 1_000_000;
const HUGE_DIR: u64 = 200_000;

/// 51 k directories under 40 top-level ones, heavy-tailed file counts; then top-level "t0"
/// rescaled to hold 1 M files, 200 k of them in "t0/huge".
fn skewed_table() -> (DirTable, Vec<u8>) {
    let mut rng = Lcg(42);
    let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
    let mut top: Vec<usize> = vec![0];
    let mut files: Vec<f64> = vec![0.0];
    for t in 0..40 {
        paths.push(format!("t{t}").into_bytes());
        top.push(paths.len() - 1);
        files.push(1.0);
    }
    while paths.len() < DIRS {
        let parent = 1 + (rng.next() * (paths.len() - 1) as f64) as usize;
        let mut p = paths[parent].clone();
        p.extend_from_slice(format!("/d{}", paths.len()).as_bytes());
        paths.push(p);
        top.push(top[parent]);
        // Pareto-like: most directories hold a few files, a few hold thousands.
        files.push((3.0 / (1.0 - rng.next()).powf(0.8)).min(50_000.0));
    }
    let huge_path = b"t0/huge".to_vec();
    paths.push(huge_path.clone());
    top.push(1);
    files.push(0.0);
    let huge = paths.len() - 1;

    let in_big = |i: usize| top[i] == 1;
    let sum_in: f64 = (0..paths.len())
        .filter(|&i| in_big(i) && i != huge)
        .map(|i| files[i])
        .sum();
    let sum_out: f64 = (0..paths.len())
        .filter(|&i| !in_big(i))
        .map(|i| files[i])
        .sum();
    let mut children: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for p in &paths[1..] {
        let parent = p
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(Vec::new(), |i| p[..i].to_vec());
        *children.entry(parent).or_default() += 1;
    }
    let mut table = DirTable::new();
    for (i, p) in paths.iter().enumerate() {
        let own = if i == huge {
            HUGE_DIR
        } else if in_big(i) {
            (files[i] * (BIG_SUBTREE - HUGE_DIR) as f64 / sum_in).round() as u64
        } else {
            (files[i] * (FILES - BIG_SUBTREE) as f64 / sum_out).round() as u64
        };
        let entries = own + children.get(p).copied().unwrap_or(0);
        table.insert(
            p.clone(),
            DirStats {
                entries,
                listed: true,
            },
        );
    }
    (table, huge_path)
}

#[test]
fn a_huge_subtree_and_a_huge_directory_are_spread_evenly() {
    let (table, huge) = skewed_table();
    let total: u64 = table.values().map(|s| s.entries).sum();
    assert!(total > FILES, "{total}");
    for shards in [16u32, 64, 256] {
        let plan = assign_shards(&table, shards, 1);
        assert_eq!(plan.len(), shards as usize);
        let ratio = imbalance(&plan);
        assert!(ratio <= 1.15, "{shards} shards: max/mean {ratio:.3}");
        let holders: BTreeSet<u32> = plan
            .iter()
            .filter(|a| a.files_only.iter().any(|f| f.path.0 == huge))
            .map(|a| a.index)
            .collect();
        assert!(
            holders.len() >= 2,
            "{shards} shards: the 200 k-entry directory is listed by {holders:?} only"
        );
        let slices: BTreeSet<(u32, u32)> = plan
            .iter()
            .flat_map(|a| a.files_only.iter())
            .filter(|f| f.path.0 == huge)
            .map(|f| {
                f.slice
                    .map(|s| (s.part, s.of))
                    .expect("a shared directory is sliced")
            })
            .collect();
        let of = slices.iter().next().unwrap().1;
        assert_eq!(
            slices,
            (0..of).map(|p| (p, of)).collect(),
            "every slice of the directory is assigned exactly once"
        );
    }
}
