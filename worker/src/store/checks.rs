//! What a file read back from the store must say before a step acts on it. `plan.json`,
//! `_SUCCESS.json`, a manifest and `latest.json` come from outside the process: a truncated
//! upload, a hand edit or a file copied from another run parses (or not) into anything. A
//! parse error is already one clear [`crate::error::Error::Corrupt`]; these checks refuse the
//! documents that parse but would make a step walk outside the root, lose or double rows, or
//! read files of another run. Each returns the reason, for the caller's error.

use std::collections::{BTreeMap, HashSet};

use crate::pathbytes::parent_of;
use crate::shard::NameSlice;
use crate::shard::planned_dirs;
use crate::store::layout::{
    LAYOUT_FORMAT, LatestPointer, ShardPlan, ShardSuccess, SnapshotManifest, manifest_path,
    shard_dir, toc_shard_dir, valid_run_id,
};
use crate::store::writer::PartFile;

type Checked = std::result::Result<(), String>;

impl ShardPlan {
    /// A plan every shard can walk: its own run, shards numbered 0.., pieces inside the root,
    /// no piece inside another (rows twice), and the slices of a directory all there (rows lost).
    pub fn check(&self) -> Checked {
        check_format("plan", self.format)?;
        if !valid_run_id(&self.run) {
            return Err(format!("run {:?} is not a valid run id", self.run));
        }
        if self.shards.is_empty() {
            return Err("has no shards".into());
        }
        let mut slices: BTreeMap<&[u8], Vec<Option<NameSlice>>> = BTreeMap::new();
        let mut subtrees = HashSet::new();
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.index as usize != i {
                return Err(format!("shard {i} says it is shard {}", shard.index));
            }
            for subtree in &shard.subtrees {
                check_relative(&subtree.0)
                    .map_err(|why| format!("shard {i}: subtree {subtree:?} {why}"))?;
                if !subtrees.insert(subtree.0.as_slice()) {
                    return Err(format!("subtree {subtree:?} is assigned twice"));
                }
            }
            for listing in &shard.files_only {
                check_relative(&listing.path.0)
                    .map_err(|why| format!("shard {i}: directory {:?} {why}", listing.path))?;
                slices
                    .entry(listing.path.0.as_slice())
                    .or_default()
                    .push(listing.slice);
            }
        }
        for (path, pieces) in &slices {
            check_slices(pieces, self.shards.len()).map_err(|why| {
                format!(
                    "directory {path:?}: {why}",
                    path = String::from_utf8_lossy(path)
                )
            })?;
        }
        let planned = planned_dirs(&self.shards);
        for path in &subtrees {
            if !path.is_empty() && planned.within_subtree(parent_of(path)) {
                return Err(format!(
                    "subtree {:?} is inside another subtree: its rows would be written twice",
                    String::from_utf8_lossy(path)
                ));
            }
        }
        for path in slices.keys() {
            if planned.within_subtree(path) {
                return Err(format!(
                    "directory {:?} is listed and also inside a subtree: its rows would be \
                     written twice",
                    String::from_utf8_lossy(path)
                ));
            }
        }
        Ok(())
    }
}

/// The listings of one directory: one whole, or every part of one slicing exactly once. The
/// planner slices a directory at most one way per shard.
fn check_slices(pieces: &[Option<NameSlice>], shards: usize) -> Checked {
    if let [None] = pieces {
        return Ok(());
    }
    let Some(Some(first)) = pieces.first() else {
        return Err("is listed whole more than once, or whole and in slices".into());
    };
    if first.of == 0 || first.of as usize > shards {
        return Err(format!(
            "is sliced {} ways; a plan of {shards} shards slices a directory 1 to {shards} ways",
            first.of
        ));
    }
    let mut seen = vec![false; first.of as usize];
    for piece in pieces {
        let Some(slice) = piece else {
            return Err("is listed whole and in slices".into());
        };
        if slice.of != first.of {
            return Err(format!("is sliced both {} and {} ways", first.of, slice.of));
        }
        match seen.get_mut(slice.part as usize) {
            Some(seen @ false) => *seen = true,
            Some(true) => return Err(format!("has slice {} of {} twice", slice.part, slice.of)),
            None => return Err(format!("has slice {} of {}", slice.part, slice.of)),
        }
    }
    match seen.iter().position(|s| !s) {
        Some(part) => Err(format!(
            "lacks slice {part} of {}: its entries would be lost",
            first.of
        )),
        None => Ok(()),
    }
}

impl ShardSuccess {
    /// A success marker of shard `index` of `run` naming only that shard's files.
    pub fn check(&self, run: &str, index: u32) -> Checked {
        check_format("_SUCCESS.json", self.format)?;
        if self.run != run || self.index != index {
            return Err(format!(
                "is of shard {} of run {}, not shard {index} of {run}",
                self.index, self.run
            ));
        }
        let toc_dir = format!("{}/", toc_shard_dir(run, index));
        let dir = format!("{}/", shard_dir(run, index));
        let files = (self.toc_files.iter().map(|f| (f, &toc_dir)))
            .chain(self.error_files.iter().map(|f| (f, &dir)));
        for (file, dir) in files {
            check_relative(file.path.as_bytes())
                .map_err(|why| format!("file {:?} {why}", file.path))?;
            if !file.path.starts_with(dir.as_str()) {
                return Err(format!("names {:?}, outside the shard's {dir}", file.path));
            }
        }
        Ok(())
    }
}

impl SnapshotManifest {
    /// A manifest of `run` whose files are all inside the output location.
    pub fn check(&self, run: &str) -> Checked {
        check_format("manifest", self.format)?;
        if self.run != run {
            return Err(format!("is of run {}, not {run}", self.run));
        }
        let derived = self.derived.values().flatten();
        check_files(
            self.toc_files
                .iter()
                .chain(&self.error_files)
                .chain(derived),
        )?;
        for page in self.summary.iter().chain(&self.report) {
            check_relative(page.as_bytes()).map_err(|why| format!("page {page:?} {why}"))?;
        }
        Ok(())
    }
}

impl LatestPointer {
    /// A pointer at the manifest of the run it names.
    pub fn check(&self) -> Checked {
        if !valid_run_id(&self.run) {
            return Err(format!("run {:?} is not a valid run id", self.run));
        }
        let expected = manifest_path(&self.run);
        if self.manifest != expected {
            return Err(format!(
                "names manifest {:?}, not its run's {expected:?}",
                self.manifest
            ));
        }
        Ok(())
    }
}

fn check_format(what: &str, format: u32) -> Checked {
    if format == LAYOUT_FORMAT {
        Ok(())
    } else {
        Err(format!(
            "is a {what} of layout format {format}; this scanjob reads format {LAYOUT_FORMAT}"
        ))
    }
}

fn check_files<'a>(files: impl Iterator<Item = &'a PartFile>) -> Checked {
    for file in files {
        check_relative(file.path.as_bytes())
            .map_err(|why| format!("file {:?} {why}", file.path))?;
    }
    Ok(())
}

/// A path relative to the root (or the output location): "" or names joined by single
/// slashes, none of them `.` or `..`, and no NUL.
fn check_relative(path: &[u8]) -> Checked {
    if path.is_empty() {
        return Ok(());
    }
    if path.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    for name in path.split(|&b| b == b'/') {
        match name {
            b"" => return Err("is not a relative path of single-slash-separated names".into()),
            b"." | b".." => return Err("leaves the root (`.` or `..`)".into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The checks against plans built at random: a plan they accept writes every row at most
    //! once, and every entry of a sliced directory exactly once. Mutated documents (truncated,
    //! bytes flipped, spliced with hostile values) parse to an error or pass the checks; none
    //! panics. Seeds come from `tests/corpus/`, the bad files the integration tests also feed
    //! to the binary.

    use super::*;
    use crate::pathbytes::PathBytes;
    use crate::shard::FilesOnly;
    use crate::shard::ShardAssignment;
    use crate::store::layout::WalkSettings;
    use proptest::prelude::*;

    fn plan(shards: Vec<ShardAssignment>) -> ShardPlan {
        ShardPlan {
            format: LAYOUT_FORMAT,
            run: "r1".into(),
            plan_id: "p".into(),
            root: "/data".into(),
            output: "file:///out".into(),
            created: chrono::DateTime::UNIX_EPOCH,
            settings: WalkSettings::default(),
            balanced_by: "top-level-count".into(),
            previous_run: None,
            planning_seconds: 0.0,
            planning_calls: 0,
            estimated_imbalance: 1.0,
            shards,
        }
    }

    /// Paths over a small alphabet, so that random plans overlap often; now and then one that
    /// leaves the root.
    fn path() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::sample::select(vec!["a", "b", "c", "a", "b", "c", "a", "b", "c", ".."]);
        prop::collection::vec(name, 0..4).prop_map(|names| names.join("/").into_bytes())
    }

    /// One piece of a plan: a subtree, a whole listing, or a listing sliced `of` ways whose
    /// parts go to random shards, sometimes damaged (a part dropped, or one given twice).
    #[derive(Debug, Clone)]
    enum Piece {
        Subtree(Vec<u8>, usize),
        Whole(Vec<u8>, usize),
        Sliced(Vec<u8>, Vec<(u32, u32, usize)>),
    }

    fn piece(shards: usize) -> impl Strategy<Value = Piece> {
        let sliced = (
            path(),
            1..=shards as u32,
            prop::collection::vec(0..shards, 4),
            0u8..10,
        )
            .prop_map(|(p, of, owners, damage)| {
                let mut parts: Vec<(u32, u32, usize)> = (0..of)
                    .map(|part| (part, of, owners[part as usize % 4]))
                    .collect();
                match damage {
                    0 => {
                        parts.pop();
                    }
                    1 => parts.push(parts[0]),
                    _ => {}
                }
                Piece::Sliced(p, parts)
            });
        prop_oneof![
            (path(), 0..shards).prop_map(|(p, s)| Piece::Subtree(p, s)),
            (path(), 0..shards).prop_map(|(p, s)| Piece::Whole(p, s)),
            sliced,
        ]
    }

    fn random_plan() -> impl Strategy<Value = ShardPlan> {
        (1usize..4)
            .prop_flat_map(|shards| (Just(shards), prop::collection::vec(piece(shards), 1..7)))
            .prop_map(|(shards, pieces)| {
                let mut assignments: Vec<ShardAssignment> = (0..shards)
                    .map(|i| ShardAssignment {
                        index: i as u32,
                        ..ShardAssignment::default()
                    })
                    .collect();
                let listing = |p: &[u8], slice| FilesOnly {
                    path: PathBytes(p.to_vec()),
                    slice,
                };
                for piece in pieces {
                    match piece {
                        Piece::Subtree(p, s) => assignments[s].subtrees.push(PathBytes(p)),
                        Piece::Whole(p, s) => assignments[s].files_only.push(listing(&p, None)),
                        Piece::Sliced(p, parts) => {
                            for (part, of, s) in parts {
                                let slice = Some(NameSlice { part, of });
                                assignments[s].files_only.push(listing(&p, slice));
                            }
                        }
                    }
                }
                plan(assignments)
            })
    }

    /// How many pieces of `plan` write the row of `path`: subtrees strictly above it, and
    /// listings of its parent whose slice holds its name. Independent of the planner's code.
    fn writers(plan: &ShardPlan, path: &[u8]) -> usize {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        let parent = parent_of(path);
        let below = |dir: &[u8]| {
            dir.is_empty()
                || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
        };
        plan.shards
            .iter()
            .map(|s| {
                s.subtrees.iter().filter(|t| below(&t.0)).count()
                    + s.files_only
                        .iter()
                        .filter(|l| {
                            l.path.0 == parent && l.slice.is_none_or(|slice| slice.contains(name))
                        })
                        .count()
            })
            .sum()
    }

    /// Entries at every depth the random plans reach, with names that land in every slice.
    fn sample_paths() -> Vec<Vec<u8>> {
        let names: Vec<String> = ["a", "b", "c"]
            .into_iter()
            .map(String::from)
            .chain((0..40).map(|i| format!("n{i}")))
            .collect();
        let mut paths: Vec<Vec<u8>> = names.iter().map(|n| n.clone().into_bytes()).collect();
        for _ in 0..3 {
            let deeper: Vec<Vec<u8>> = paths
                .iter()
                .filter(|p| p.len() < 6)
                .flat_map(|p| {
                    ["a", "b", "c", "n1", "n2", "n3"]
                        .map(|n| [p.as_slice(), b"/", n.as_bytes()].concat())
                })
                .collect();
            paths.extend(deeper);
        }
        paths.sort();
        paths.dedup();
        paths
    }

    /// Runs `property` over `cases` random plans; returns how many plans the checks accepted.
    fn for_random_plans(
        cases: u32,
        property: impl Fn(&ShardPlan) -> Result<(), TestCaseError>,
    ) -> usize {
        let accepted = std::sync::atomic::AtomicUsize::new(0);
        // A failing case is kept in worker/proptest-regressions/ and tried first from then on.
        let config = ProptestConfig {
            cases,
            source_file: Some(file!()),
            ..ProptestConfig::default()
        };
        proptest::test_runner::TestRunner::new(config)
            .run(&random_plan(), |plan| {
                if plan.check().is_ok() {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    property(&plan)?;
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        accepted.into_inner()
    }

    #[test]
    fn an_accepted_plan_writes_no_row_twice_and_loses_no_slice() {
        let paths = sample_paths();
        let accepted = for_random_plans(3000, |plan| {
            for path in &paths {
                let n = writers(plan, path);
                let shown = String::from_utf8_lossy(path);
                prop_assert!(n <= 1, "{shown} written {n} times by {plan:?}");
                let parent = parent_of(path);
                let sliced = plan
                    .shards
                    .iter()
                    .flat_map(|s| &s.files_only)
                    .any(|l| l.path.0 == parent && l.slice.is_some());
                if sliced {
                    prop_assert_eq!(n, 1, "{} of a sliced directory, in {:?}", shown, plan);
                }
            }
            Ok(())
        });
        // The property says something only about plans the checks let through.
        assert!(
            accepted >= 300,
            "only {accepted} of 3000 random plans accepted"
        );
    }

    proptest! {
        #[test]
        fn no_document_makes_a_check_panic(seed in 0usize..1000, edits in prop::collection::vec(edit(), 1..4)) {
            let corpus = corpus();
            let (kind, bytes) = &corpus[seed % corpus.len()];
            let mut bytes = bytes.clone();
            for e in edits {
                e.apply(&mut bytes);
            }
            // Either a parse error (the caller's Corrupt) or a checked document; never a panic.
            let _ = parse_and_check(kind, &bytes);
        }
    }

    /// One edit of a document's bytes.
    #[derive(Debug, Clone)]
    enum Edit {
        Truncate(usize),
        Flip(usize, u8),
        Splice(usize, &'static str),
    }

    impl Edit {
        fn apply(self, bytes: &mut Vec<u8>) {
            match self {
                Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
                Edit::Flip(at, b) if !bytes.is_empty() => {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
                Edit::Flip(..) => {}
                Edit::Splice(at, text) => {
                    let i = at % (bytes.len() + 1);
                    bytes.splice(i..i, text.bytes());
                }
            }
        }
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
            (
                any::<usize>(),
                prop::sample::select(vec![
                    "..",
                    "/",
                    "\"../..\"",
                    "-1",
                    "4294967296",
                    "1e999",
                    "null",
                    "[]",
                    "{}",
                    "\"\"",
                    "\"a//b\"",
                    "\\u0000",
                    "\"of\":0",
                    "\"part\":9",
                    ",",
                    "\"",
                ])
            )
                .prop_map(|(at, text)| Edit::Splice(at, text)),
        ]
    }

    /// The files of `tests/corpus/<kind>/`, by kind.
    fn corpus() -> &'static [(String, Vec<u8>)] {
        static CORPUS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
        CORPUS.get_or_init(read_corpus)
    }

    fn read_corpus() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let mut files = Vec::new();
        for kind in ["plan", "success", "manifest", "latest"] {
            let mut entries: Vec<_> = std::fs::read_dir(dir.join(kind))
                .unwrap_or_else(|e| panic!("{}/{kind}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for path in entries {
                files.push((kind.to_string(), std::fs::read(path).unwrap()));
            }
        }
        assert!(files.len() >= 8, "the corpus is there");
        files
    }

    fn parse_and_check(kind: &str, bytes: &[u8]) -> Checked {
        let parse_err = |e: serde_json::Error| e.to_string();
        match kind {
            "plan" => serde_json::from_slice::<ShardPlan>(bytes)
                .map_err(parse_err)?
                .check(),
            "success" => serde_json::from_slice::<ShardSuccess>(bytes)
                .map_err(parse_err)?
                .check("r1", 0),
            "manifest" => serde_json::from_slice::<SnapshotManifest>(bytes)
                .map_err(parse_err)?
                .check("r1"),
            _ => serde_json::from_slice::<LatestPointer>(bytes)
                .map_err(parse_err)?
                .check(),
        }
    }

    #[test]
    fn the_corpus_holds_both_good_and_refused_documents() {
        let results: Vec<(String, Checked)> = corpus()
            .iter()
            .map(|(kind, bytes)| (kind.clone(), parse_and_check(kind, bytes)))
            .collect();
        for kind in ["plan", "success", "manifest", "latest"] {
            let of_kind: Vec<&Checked> = results
                .iter()
                .filter(|(k, _)| k == kind)
                .map(|(_, r)| r)
                .collect();
            assert!(of_kind.iter().any(|r| r.is_ok()), "{kind}: a valid seed");
            assert!(of_kind.iter().any(|r| r.is_err()), "{kind}: a refused seed");
        }
    }

    #[test]
    fn hand_edits_are_refused_with_the_reason() {
        let whole = |path: &str| FilesOnly {
            path: PathBytes(path.as_bytes().to_vec()),
            slice: None,
        };
        // Slice `part` of `of` of the root's listing.
        let root_slice = |part, of| FilesOnly {
            path: PathBytes(vec![]),
            slice: Some(NameSlice { part, of }),
        };
        let shard = |index, subtrees: &[&str], files_only: Vec<FilesOnly>| ShardAssignment {
            index,
            subtrees: subtrees
                .iter()
                .map(|p| PathBytes(p.as_bytes().to_vec()))
                .collect(),
            files_only,
            estimated_entries: 0,
        };
        let good = plan(vec![
            shard(0, &["a", "b"], vec![whole("")]),
            shard(1, &["c/d"], vec![whole("c")]),
        ]);
        assert_eq!(good.check(), Ok(()));
        let cases = [
            (plan(vec![shard(0, &["../etc"], vec![])]), "leaves the root"),
            (plan(vec![shard(0, &["/etc"], vec![])]), "single-slash"),
            (
                plan(vec![shard(1, &["a"], vec![])]),
                "shard 0 says it is shard 1",
            ),
            (
                plan(vec![shard(0, &["a"], vec![]), shard(1, &["a/b"], vec![])]),
                "inside another subtree",
            ),
            (
                plan(vec![shard(0, &["a"], vec![]), shard(1, &["a"], vec![])]),
                "assigned twice",
            ),
            (
                plan(vec![shard(0, &["a"], vec![whole("a/b")])]),
                "also inside a subtree",
            ),
            (
                plan(vec![shard(0, &[], vec![whole(""), whole("")])]),
                "more than once",
            ),
            (
                plan(vec![shard(0, &[], vec![root_slice(0, 0)])]),
                "sliced 0 ways",
            ),
            (plan(vec![]), "no shards"),
            (
                plan(vec![
                    shard(0, &[], vec![root_slice(1, 2)]),
                    shard(1, &[], vec![]),
                ]),
                "lacks slice 0 of 2",
            ),
            (
                plan(vec![
                    shard(0, &[], vec![root_slice(2, 2)]),
                    shard(1, &[], vec![]),
                ]),
                "has slice 2 of 2",
            ),
        ];
        for (plan, reason) in cases {
            let err = plan.check().expect_err(reason);
            assert!(err.contains(reason), "{err:?} should say {reason:?}");
        }
    }
}
