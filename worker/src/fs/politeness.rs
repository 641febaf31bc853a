//! Politeness towards a shared file server: an operations budget and a latency guard.
//!
//! - The budget (`--max-ops-per-second`) paces every file-system call the walker makes (open,
//!   directory read, stat) through one schedule shared by all threads: each call takes the next
//!   free slot, `1 / rate` after the previous one, and sleeps until it; a directory open takes
//!   [`DIR_OPEN_SLOTS`], as it costs the server that many requests. No bursts, so the rate
//!   holds over any window longer than a few slots. A run's budget is split between its pods by
//!   the operator.
//! - The latency guard (`--latency-guard-ms`) limits the calls in flight, AIMD-style as TCP does:
//!   every second (or 1,000 calls) it looks at the p99 latency of the calls that finished; above
//!   the threshold it halves the limit, otherwise it adds one back, up to the thread count. On a
//!   server that slows down because it is busy, the scanner backs off instead of piling on.
//!
//! Neither costs anything when not asked for: the walker holds `None`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::fd::AsFd;
use rustix::fs::{RawDir, RawDirEntry};
use scanjob_contract::args::Budget;
use serde::{Deserialize, Serialize};

/// Paces calls to at most `per_second`, shared by all threads.
#[derive(Debug)]
pub struct OpsBudget {
    interval_ns: u64,
    epoch: Instant,
    /// The next free slot, in nanoseconds since `epoch`.
    next: AtomicU64,
}

impl OpsBudget {
    pub fn new(per_second: u32) -> Self {
        Self {
            interval_ns: 1_000_000_000 / u64::from(per_second.max(1)),
            epoch: Instant::now(),
            next: AtomicU64::new(0),
        }
    }

    /// Takes `n` consecutive slots and waits for the first: one call that costs the server `n`
    /// requests.
    pub fn wait_n(&self, n: u64) {
        if let Some(wait) = self.take_n(n) {
            std::thread::sleep(wait);
        }
    }

    /// Takes `n` consecutive slots and returns how long to wait for the first, if at all: for a
    /// caller that waits without blocking its thread (the NFS client's calls).
    pub fn take_n(&self, n: u64) -> Option<Duration> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        let mut next = self.next.load(Ordering::Relaxed);
        let slot = loop {
            // A slot left unused in the past is gone: idle time does not build up a burst.
            let slot = next.max(now);
            match self.next.compare_exchange_weak(
                next,
                slot + self.interval_ns * n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break slot,
                Err(seen) => next = seen,
            }
        };
        (slot > now).then(|| Duration::from_nanos(slot - now))
    }
}

/// AIMD limit on calls in flight, driven by their p99 latency.
#[derive(Debug)]
pub struct LatencyGuard {
    threshold: Duration,
    max: usize,
    state: Mutex<GuardState>,
    room: Condvar,
}

#[derive(Debug)]
struct GuardState {
    limit: usize,
    in_flight: usize,
    window: Vec<u32>,
    window_start: Instant,
    lowest_limit: usize,
    backoffs: u64,
    last_p99_us: u32,
}

/// How a guard is doing, for the run summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GuardReport {
    pub threshold_ms: f64,
    pub limit: usize,
    pub lowest_limit: usize,
    pub backoffs: u64,
    pub last_p99_ms: f64,
}

const WINDOW: Duration = Duration::from_secs(1);
const WINDOW_CALLS: usize = 1000;
/// Fewer samples than this say nothing about a p99.
const MIN_SAMPLES: usize = 20;

impl LatencyGuard {
    /// A guard for `threads` threads; the limit starts at `threads`.
    pub fn new(threshold: Duration, threads: usize) -> Self {
        let max = threads.max(1);
        Self {
            threshold,
            max,
            state: Mutex::new(GuardState {
                limit: max,
                in_flight: 0,
                window: Vec::with_capacity(WINDOW_CALLS),
                window_start: Instant::now(),
                lowest_limit: max,
                backoffs: 0,
                last_p99_us: 0,
            }),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a call may start.
    pub fn enter(&self) {
        let mut s = self.lock();
        while s.in_flight >= s.limit {
            s = self.room.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.in_flight += 1;
    }

    /// A call that took `latency` has ended.
    pub fn leave(&self, latency: Duration) {
        let mut s = self.lock();
        s.in_flight -= 1;
        s.window
            .push(latency.as_micros().min(u32::MAX as u128) as u32);
        if s.window.len() >= WINDOW_CALLS
            || (s.window_start.elapsed() >= WINDOW && s.window.len() >= MIN_SAMPLES)
        {
            let at = (s.window.len() * 99).div_ceil(100) - 1;
            let (_, p99, _) = s.window.select_nth_unstable(at);
            let p99 = *p99;
            s.last_p99_us = p99;
            if Duration::from_micros(u64::from(p99)) > self.threshold {
                s.limit = (s.limit / 2).max(1);
                s.backoffs += 1;
                s.lowest_limit = s.lowest_limit.min(s.limit);
                tracing::info!(
                    p99_ms = f64::from(p99) / 1000.0,
                    limit = s.limit,
                    "latency guard backs off"
                );
            } else if s.limit < self.max {
                s.limit += 1;
            }
            s.window.clear();
            s.window_start = Instant::now();
        }
        drop(s);
        self.room.notify_one();
    }

    pub fn report(&self) -> GuardReport {
        let s = self.lock();
        GuardReport {
            threshold_ms: self.threshold.as_secs_f64() * 1000.0,
            limit: s.limit,
            lowest_limit: s.lowest_limit,
            backoffs: s.backoffs,
            last_p99_ms: f64::from(s.last_p99_us) / 1000.0,
        }
    }
}

/// Both, as the walker uses them around every file-system call.
#[derive(Debug, Default)]
pub struct Politeness {
    pub budget: Option<OpsBudget>,
    pub guard: Option<LatencyGuard>,
}

/// The budget's slots a directory open takes: a FUSE server sees a LOOKUP, an OPENDIR and a
/// RELEASEDIR for it, where a stat is one LOOKUP and a directory read one READDIR.
pub const DIR_OPEN_SLOTS: u64 = 3;

/// What the run summary says about politeness.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PolitenessReport {
    /// File-system calls made: directory opens, directory reads (`getdents64`, up to 64 KiB of
    /// names each, and one more that finds the end) and stats.
    pub calls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ops_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_guard: Option<GuardReport>,
}

impl Politeness {
    pub fn new(budget: Budget, threads: usize) -> Self {
        Self {
            budget: budget.max_ops_per_second.map(OpsBudget::new),
            guard: budget
                .latency_guard_ms
                .map(|ms| LatencyGuard::new(Duration::from_millis(u64::from(ms)), threads)),
        }
    }

    /// Runs one file-system call under the budget and the guard.
    #[inline]
    pub fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        self.call_costing(1, f)
    }

    /// [`Politeness::call`] for a call that costs the server `slots` requests: it takes that
    /// many of the budget's slots.
    pub fn call_costing<T>(&self, slots: u64, f: impl FnOnce() -> T) -> T {
        if let Some(budget) = &self.budget {
            budget.wait_n(slots);
        }
        match &self.guard {
            None => f(),
            Some(guard) => {
                guard.enter();
                let start = Instant::now();
                let out = f();
                guard.leave(start.elapsed());
                out
            }
        }
    }

    /// The next entry of `dir`. When its buffer is empty that is a `getdents64` call (a READDIR
    /// on NFS): paced and counted (`count`) like any other call.
    pub fn next_entry<'d, Fd: AsFd>(
        &self,
        dir: &'d mut RawDir<'_, Fd>,
        count: impl FnOnce(),
    ) -> Option<rustix::io::Result<RawDirEntry<'d>>> {
        if dir.is_buffer_empty() {
            count();
            self.call(|| dir.next())
        } else {
            dir.next()
        }
    }

    /// The report of a walk that made `calls` calls.
    pub fn report(&self, calls: u64) -> PolitenessReport {
        PolitenessReport {
            calls,
            max_ops_per_second: self.budget.as_ref().map(|b| 1e9 / b.interval_ns as f64),
            latency_guard: self.guard.as_ref().map(LatencyGuard::report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_paces_calls_from_many_threads() {
        let p = Politeness::new(
            Budget {
                max_ops_per_second: Some(2000),
                latency_guard_ms: None,
            },
            4,
        );
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..250 {
                        p.call(|| ());
                    }
                });
            }
        });
        // 1,000 calls at 2,000/s: the last slot is at 0.4995 s.
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.49, "1,000 calls in {took:.3} s beat the budget");
        assert_eq!(p.report(1000).max_ops_per_second, Some(2000.0));
    }

    #[test]
    fn a_call_costing_three_slots_takes_three() {
        let p = Politeness::new(
            Budget {
                max_ops_per_second: Some(1000),
                latency_guard_ms: None,
            },
            1,
        );
        let start = Instant::now();
        // 100 calls of three slots at 1,000/s: the last call's slot is at 0.297 s.
        for _ in 0..100 {
            p.call_costing(DIR_OPEN_SLOTS, || ());
        }
        let took = start.elapsed().as_secs_f64();
        assert!(took >= 0.29, "300 slots in {took:.3} s beat the budget");
    }

    #[test]
    fn the_guard_halves_on_slow_calls_and_recovers_on_fast_ones() {
        let g = LatencyGuard::new(Duration::from_millis(5), 16);
        for _ in 0..WINDOW_CALLS {
            g.enter();
            g.leave(Duration::from_millis(20));
        }
        assert_eq!(g.report().limit, 8);
        for _ in 0..WINDOW_CALLS {
            g.enter();
            g.leave(Duration::from_millis(20));
        }
        assert_eq!(g.report().limit, 4);
        for _ in 0..3 * WINDOW_CALLS {
            g.enter();
            g.leave(Duration::from_micros(100));
        }
        let r = g.report();
        assert_eq!((r.limit, r.lowest_limit, r.backoffs), (7, 4, 2));
    }
}
