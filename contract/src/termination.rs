//! The termination message: what a finished `scanjob` process leaves at `--termination-log`
//! (the container's `terminationMessagePath`), and what the operator reads from each pod's
//! terminated state to fill the ScanJob's status.
//!
//! The message is one line of compact JSON, always complete and at most
//! [`MAX_TERMINATION_MESSAGE_BYTES`] bytes (the kubelet keeps 4 KiB): a success names its
//! `phase`, a failure has an `error` label instead.
//!
//! ```text
//! {"phase":"plan","run":..,"plan":URL,"shards":N,"balanced_by":..,"estimated_imbalance":F}
//! {"phase":"scan","run":..,"index":I,"entries":N,"files":N,"directories":N,"bytes":N,"errors":N}
//! {"phase":"merge"|"run","run":..,"snapshot":URL,"files":N,"directories":N,"bytes":N,"errors":N,"missing_shards":[I,..]}
//! {"error":LABEL,"message":..,"retryable":BOOL}
//! ```

use serde::{Deserialize, Serialize};

/// The most a termination message may take; longer text fields are shortened to fit.
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4000;

/// What the operator reads from a finished pod: a phase's result or a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TerminationMessage {
    Success(PhaseResult),
    Failure(Failure),
}

/// The result of a phase that succeeded, tagged by `"phase"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum PhaseResult {
    Plan(Planned),
    Scan(Scanned),
    Merge(Merged),
    Hash(Hashed),
    Join(JoinedPart),
    /// `scanjob run`: plan, scan and merge on one machine; reported like a merge.
    Run(Merged),
}

/// `scanjob plan` succeeded: the operator starts `shards` scan pods on `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub run: String,
    /// The full URL of `runs/<run>/plan.json`, as `scanjob scan --plan` takes it.
    pub plan: String,
    pub shards: u32,
    /// "previous-snapshot", "top-level-count" or "single-shard".
    pub balanced_by: String,
    /// The heaviest shard's estimated entries over the mean.
    pub estimated_imbalance: f64,
}

/// `scanjob scan` succeeded for shard `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scanned {
    pub run: String,
    pub index: u32,
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    /// Sum of `size` over regular files.
    pub bytes: u64,
    pub errors: u64,
}

/// `scanjob hash` wrote partition `index` of the night's hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashed {
    pub run: String,
    pub index: u32,
    /// Candidate files (inodes) of the partition, and the bytes read for them.
    pub files: u64,
    pub bytes_read: u64,
}

/// `scanjob join` wrote partition `index` of a merge's joins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinedPart {
    pub run: String,
    pub index: u32,
    /// Rows of the snapshot's ToC the partition wrote.
    pub rows: u64,
}

/// `scanjob merge` (or `run`) published a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub run: String,
    /// The full URL of `snapshots/<run>/manifest.json`.
    pub snapshot: String,
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Shards the snapshot lacks (`merge --max-missing-shards`); empty for a complete one.
    pub missing_shards: Vec<u32>,
    /// How many missing shards were left out of `missing_shards` to fit the message; the
    /// manifest lists them all. Absent when none were.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missing_shards_omitted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Any command failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// A short stable label of the error kind, e.g. "bad_root", "store", or "usage" for a
    /// command line that does not parse.
    pub error: String,
    /// The error and its causes, as the one stderr line says it.
    pub message: String,
    /// Whether the exit code says a retry may pass ([`crate::exit::EXIT_RETRYABLE`]), as
    /// opposed to input a retry cannot fix ([`crate::exit::EXIT_PERMANENT`]).
    pub retryable: bool,
}

impl From<PhaseResult> for TerminationMessage {
    fn from(result: PhaseResult) -> Self {
        Self::Success(result)
    }
}

impl From<Failure> for TerminationMessage {
    fn from(failure: Failure) -> Self {
        Self::Failure(failure)
    }
}

/// Text fields at most this long are never shortened.
const KEEP_BYTES: usize = 16;
const ELLIPSIS: &str = "…";

impl TerminationMessage {
    /// The message as one line of JSON of at most [`MAX_TERMINATION_MESSAGE_BYTES`] bytes.
    /// When too long, trailing `missing_shards` are left out first (counted in
    /// `missing_shards_omitted`), then the longest text fields are cut at a character boundary
    /// and end in "…", each by no more than needed.
    pub fn to_line(&self) -> String {
        let mut message = self.clone();
        if !message.fits() {
            let listed = message.missing_shards().map_or(0, |(list, _)| list.len());
            if listed > 0 {
                message.fit(listed, |m, keep| {
                    let (list, omitted) = m.missing_shards().expect("a merge");
                    *omitted += (list.len() - keep) as u32;
                    list.truncate(keep);
                });
            }
        }
        while !message.fits() {
            let longest = message
                .texts()
                .into_iter()
                .enumerate()
                .filter(|(_, text)| text.len() > KEEP_BYTES)
                .max_by_key(|(_, text)| text.len())
                .map(|(field, text)| (field, text.clone()));
            let Some((field, original)) = longest else {
                // Unreachable with the fields above; still valid JSON if it ever happens.
                return r#"{"error":"internal","message":"termination message too long","retryable":false}"#.to_string();
            };
            // Either it fits now, or the field is down to "…" and the next one is cut.
            message.fit(original.len(), |m, keep| {
                let mut cut = keep;
                while !original.is_char_boundary(cut) {
                    cut -= 1;
                }
                *m.texts().swap_remove(field) = format!("{}{ELLIPSIS}", &original[..cut]);
            });
        }
        serde_json::to_string(&message).expect("serialisable")
    }

    fn fits(&self) -> bool {
        serde_json::to_string(self).expect("serialisable").len() <= MAX_TERMINATION_MESSAGE_BYTES
    }

    /// Applies `shorten(self, n)` with the largest `n < max` for which the message fits, or
    /// with 0 when none does. Longer `n` must never give a shorter message.
    fn fit(&mut self, max: usize, shorten: impl Fn(&mut Self, usize)) {
        let (mut lo, mut hi) = (0, max.saturating_sub(1));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let mut trial = self.clone();
            shorten(&mut trial, mid);
            if trial.fits() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        shorten(self, lo);
    }

    /// The free-text fields, which may be shortened to fit.
    fn texts(&mut self) -> Vec<&mut String> {
        match self {
            Self::Success(PhaseResult::Plan(p)) => {
                vec![&mut p.run, &mut p.plan, &mut p.balanced_by]
            }
            Self::Success(PhaseResult::Scan(s)) => vec![&mut s.run],
            Self::Success(PhaseResult::Hash(h)) => vec![&mut h.run],
            Self::Success(PhaseResult::Join(j)) => vec![&mut j.run],
            Self::Success(PhaseResult::Merge(m) | PhaseResult::Run(m)) => {
                vec![&mut m.run, &mut m.snapshot]
            }
            Self::Failure(f) => vec![&mut f.error, &mut f.message],
        }
    }

    fn missing_shards(&mut self) -> Option<(&mut Vec<u32>, &mut u32)> {
        match self {
            Self::Success(PhaseResult::Merge(m) | PhaseResult::Run(m)) => {
                Some((&mut m.missing_shards, &mut m.missing_shards_omitted))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(snapshot: String, missing: Vec<u32>) -> TerminationMessage {
        PhaseResult::Merge(Merged {
            run: "r1".into(),
            snapshot,
            files: 3,
            directories: 2,
            bytes: 10,
            errors: 0,
            missing_shards: missing,
            missing_shards_omitted: 0,
        })
        .into()
    }

    #[test]
    fn messages_are_compact_json_with_the_documented_keys() {
        let line = merged("file:///t/snapshots/r1/manifest.json".into(), vec![1]).to_line();
        assert_eq!(
            line,
            r#"{"phase":"merge","run":"r1","snapshot":"file:///t/snapshots/r1/manifest.json","files":3,"directories":2,"bytes":10,"errors":0,"missing_shards":[1]}"#
        );
        let failure: TerminationMessage = Failure {
            error: "incomplete".into(),
            message: "run r1 is not complete".into(),
            retryable: true,
        }
        .into();
        let line = failure.to_line();
        assert_eq!(
            line,
            r#"{"error":"incomplete","message":"run r1 is not complete","retryable":true}"#
        );
        assert_eq!(
            serde_json::from_str::<TerminationMessage>(&line).unwrap(),
            failure
        );
    }

    #[test]
    fn a_long_message_is_shortened_to_valid_json() {
        let failure: TerminationMessage = Failure {
            error: "store".into(),
            message: "é\"\n\u{1}".repeat(3000),
            retryable: true,
        }
        .into();
        let line = failure.to_line();
        assert!(
            line.len() <= MAX_TERMINATION_MESSAGE_BYTES,
            "{}",
            line.len()
        );
        assert!(
            line.len() > MAX_TERMINATION_MESSAGE_BYTES - 100,
            "{}",
            line.len()
        );
        assert!(!line.contains('\n'));
        let TerminationMessage::Failure(parsed) = serde_json::from_str(&line).unwrap() else {
            panic!("a failure: {line}");
        };
        assert!(parsed.message.ends_with(ELLIPSIS));
        assert!(parsed.message.starts_with("é\"\n\u{1}"));
    }

    #[test]
    fn many_missing_shards_are_cut_before_the_snapshot_url() {
        let url = format!("s3://bucket/{}/snapshots/r1/manifest.json", "p".repeat(300));
        let line = merged(url.clone(), (0..5000).collect()).to_line();
        assert!(
            line.len() <= MAX_TERMINATION_MESSAGE_BYTES,
            "{}",
            line.len()
        );
        let TerminationMessage::Success(PhaseResult::Merge(m)) =
            serde_json::from_str(&line).unwrap()
        else {
            panic!("a merge: {line}");
        };
        assert_eq!(m.snapshot, url);
        assert_eq!(
            m.missing_shards.len() as u32 + m.missing_shards_omitted,
            5000
        );
        assert_eq!(m.missing_shards[..3], [0, 1, 2]);

        let huge = "x".repeat(10_000);
        let line = merged(huge, vec![]).to_line();
        assert!(line.len() <= MAX_TERMINATION_MESSAGE_BYTES);
        serde_json::from_str::<TerminationMessage>(&line).unwrap();
    }
}
