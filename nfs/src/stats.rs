//! What a scan cost the server: calls, errors and JUKEBOX retries per procedure, and latency
//! percentiles from a log-scale histogram (four buckets per doubling, so a percentile is within
//! 25 % of the true value). Lock-free: every call of every task records here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::proto::Procedure;

const BUCKETS: usize = 128;

#[derive(Debug)]
pub(crate) struct Stats {
    procedures: [ProcedureCounters; Procedure::ALL.len()],
}

#[derive(Debug)]
struct ProcedureCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    max_micros: AtomicU64,
    total_micros: AtomicU64,
    histogram: [AtomicU64; BUCKETS],
}

/// One procedure's counters and latencies, read out at the end of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcedureStats {
    pub procedure: Procedure,
    /// Calls sent, retries included.
    pub calls: u64,
    /// Calls answered with an error status, or not answered.
    pub errors: u64,
    /// Calls sent again after JUKEBOX.
    pub retries: u64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub total: Duration,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            procedures: std::array::from_fn(|_| ProcedureCounters {
                calls: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                max_micros: AtomicU64::new(0),
                total_micros: AtomicU64::new(0),
                histogram: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }

    pub(crate) fn record(&self, procedure: Procedure, latency: Duration, ok: bool) {
        let c = &self.procedures[procedure.index()];
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        c.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.max_micros.fetch_max(micros, Ordering::Relaxed);
        c.total_micros.fetch_add(micros, Ordering::Relaxed);
        c.histogram[bucket(micros)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_retry(&self, procedure: Procedure) {
        self.procedures[procedure.index()]
            .retries
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The procedures called at least once.
    pub(crate) fn snapshot(&self) -> Vec<ProcedureStats> {
        Procedure::ALL
            .iter()
            .zip(&self.procedures)
            .filter(|(_, c)| c.calls.load(Ordering::Relaxed) > 0)
            .map(|(&procedure, c)| {
                let histogram: Vec<u64> = c
                    .histogram
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect();
                let max = c.max_micros.load(Ordering::Relaxed);
                // A bucket's upper bound can exceed the largest value seen.
                let at = |q| Duration::from_micros(percentile(&histogram, q).min(max));
                ProcedureStats {
                    procedure,
                    calls: c.calls.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                    p50: at(0.50),
                    p90: at(0.90),
                    p99: at(0.99),
                    max: Duration::from_micros(max),
                    total: Duration::from_micros(c.total_micros.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }
}

/// The bucket of a latency in µs: exact below 4, then four buckets per power of two.
fn bucket(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let octave = micros.ilog2() as usize;
    let quarter = ((micros >> (octave - 2)) & 3) as usize;
    (4 * (octave - 1) + quarter).min(BUCKETS - 1)
}

/// The largest latency (µs) that falls into `bucket`.
fn upper_bound(bucket: usize) -> u64 {
    if bucket < 4 {
        return bucket as u64;
    }
    let octave = bucket / 4 + 1;
    let quarter = (bucket % 4) as u64;
    ((5 + quarter) << (octave - 2)).saturating_sub(1)
}

/// The upper bound of the bucket holding the q-th quantile.
fn percentile(histogram: &[u64], q: f64) -> u64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return upper_bound(i);
        }
    }
    upper_bound(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_falls_in_the_bucket_that_bounds_it() {
        for micros in (0..5000).chain([1 << 20, 12_345_678]) {
            let b = bucket(micros);
            assert!(upper_bound(b) >= micros, "{micros} in {b}");
            if b > 0 {
                assert!(upper_bound(b - 1) < micros, "{micros} in {b}");
            }
        }
    }

    #[test]
    fn percentiles_are_within_a_quarter() {
        let stats = Stats::new();
        for micros in 1..=1000 {
            stats.record(Procedure::GetAttr, Duration::from_micros(micros), true);
        }
        let s = &stats.snapshot()[0];
        assert_eq!(s.calls, 1000);
        let within = |d: Duration, want: u64| {
            let got = d.as_micros() as u64;
            got >= want && got <= want + want / 4
        };
        assert!(within(s.p50, 500), "{:?}", s.p50);
        assert!(within(s.p90, 900), "{:?}", s.p90);
        assert!(within(s.p99, 990), "{:?}", s.p99);
        assert_eq!(s.max, Duration::from_micros(1000));
    }
}
