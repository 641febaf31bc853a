#!/usr/bin/env python3
"""The operations budget and the latency guard, measured through slowfs.

    politeness.py OUT_DIR [--budget 2000] [--threads 32] [--guard-ms 10]

1. Budget: `scanjob run --max-ops-per-second B` with many threads over slowfs at 1 ms. Reports the
   calls the scanner made per second of wall time, against B, and the FUSE requests per second
   that slowfs served.
2. Guard: `scanjob run --latency-guard-ms G`; two seconds in, the file server turns slow for
   four seconds (the slowfs process is stopped 40 ms of every 50 ms, so requests in flight wait);
   the scanner's log shows the guard halving the calls in flight while the p99 is above G and
   adding them back after. The same run without the guard is timed for comparison.

Env as testkit/slowfs/bench.py (TREE, MNT, SLOWFS, TRUTH); SCANJOB is the binary.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testkit", "slowfs"))
import bench as slowfs  # noqa: E402

SCANJOB = os.environ.get("SCANJOB", os.path.expanduser("~/.cache/scanjob/target/release/scanjob"))


def scan(extra, env=None):
    out = tempfile.mkdtemp(prefix="politeness-")
    r0 = slowfs.requests()["total"]
    t0 = time.perf_counter()
    p = subprocess.run([SCANJOB, "run", slowfs.MNT, "--out", out, "--json"] + extra,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - t0
    r1 = slowfs.requests()["total"]
    subprocess.run(["rm", "-rf", out])
    if p.returncode != 0:
        sys.exit(f"scanjob failed: {p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1]), wall, r1 - r0, p.stderr


def slow_server(pid, after, seconds, stop_ms=40, run_ms=10):
    time.sleep(after)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(stop_ms / 1000)
        os.kill(pid, signal.SIGCONT)
        time.sleep(run_ms / 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--guard-ms", type=int, default=10)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lines = []
    slowfs.mount(1000)
    try:
        s, wall, reqs, _ = scan(["--threads", str(a.threads), "--max-ops-per-second", str(a.budget)])
        calls = s["politeness"]["calls"]
        lines += [
            f"## Budget: --max-ops-per-second {a.budget}, {a.threads} threads, slowfs 1 ms",
            "",
            "| files | calls | wall s | calls/s | vs budget | slowfs requests/s |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {s['files']} | {calls} | {wall:.2f} | {calls / wall:,.0f} | {calls / wall / a.budget - 1:+.1%} "
            f"| {reqs / wall:,.0f} |",
            "",
        ]
        s0, wall0, _, _ = scan(["--threads", str(a.threads)])
        lines.append(f"Without the budget the same scan took {wall0:.2f} s ({s0['politeness']['calls'] / wall0:,.0f} calls/s).\n")

        pid = int(open(slowfs.PIDF).read())
        results = {}
        for guarded in (False, True):
            t = threading.Thread(target=slow_server, args=(pid, 2.0, 4.0))
            t.start()
            extra = ["--threads", str(a.threads)] + (["--latency-guard-ms", str(a.guard_ms)] if guarded else [])
            s, wall, reqs, err = scan(extra, env={"RUST_LOG": "scanjob_worker=info"})
            t.join()
            results[guarded] = (s, wall, err)
        s, wall, err = results[True]
        backoffs = [l for l in err.splitlines() if "latency guard backs off" in l]
        g = s["politeness"]["latency_guard"]
        lines += [
            f"## Latency guard: --latency-guard-ms {a.guard_ms}, {a.threads} threads; the server is "
            "slow (stopped 40 ms of every 50) from 2 s to 6 s",
            "",
            f"- with the guard: {wall:.2f} s, {g['backoffs']} back-offs, calls in flight down to "
            f"{g['lowest_limit']} (of {a.threads}), back to {g['limit']} at the end, last p99 {g['last_p99_ms']:.1f} ms",
            f"- without: {results[False][1]:.2f} s",
            "",
            "The guard's log lines (p99 of the second before, the new limit):",
            "",
            "```",
        ]
        for l in backoffs:
            l = re.sub(r"\x1b\[[0-9;]*m", "", l)
            m = re.search(r"(\d\d:\d\d:\d\d\.\d+).*p99_ms=([\d.]+).*limit=(\d+)", l)
            lines.append(f"{m.group(1)}  p99 {float(m.group(2)):.1f} ms -> limit {m.group(3)}" if m else l)
        lines.append("```")
    finally:
        slowfs.umount()
    report = "\n".join(lines) + "\n"
    open(os.path.join(a.out, "politeness.md"), "w").write(report)
    print(report)


if __name__ == "__main__":
    main()
