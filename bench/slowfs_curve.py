#!/usr/bin/env python3
"""Scanners through slowfs at a fixed latency, by thread count: the curve of files/s against
threads for scanjob, the stat-walk floor and pdu, side by side in one run.

    slowfs_curve.py OUT_DIR [--latency-us 1000] [--threads 1,2,4,8,16,32,64,128] [--tools scanjob,floor,pdu]
    slowfs_curve.py OUT_DIR --plot-only

Uses testkit/slowfs/bench.py to mount slowfs over $TREE at $MNT and to read its request
counters (env TREE, MNT, SLOWFS, FLOOR, PDU as there; SCANJOB is the scanjob binary). One run per
point: every request goes to FUSE, so there is nothing to warm. Writes OUT_DIR/curve.jsonl,
OUT_DIR/curve.md and OUT_DIR/curve.png (matplotlib).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testkit", "slowfs"))
import bench as slowfs  # noqa: E402

SCANJOB = os.environ.get("SCANJOB", os.path.expanduser("~/.cache/scanjob/target/release/scanjob"))


def command(tool, threads, out):
    if tool == "scanjob":
        return [SCANJOB, "run", slowfs.MNT, "--out", out, "--threads", str(threads), "--json"]
    if tool == "floor":
        return [slowfs.FLOOR, "-j", str(threads), slowfs.MNT]
    if tool == "pdu":
        return [slowfs.PDU, "--threads", str(threads), "-q", "apparent-size", "-b", "plain", "-d", "1",
                slowfs.MNT]
    raise SystemExit("unknown tool " + tool)


def files_found(tool, stdout):
    if tool == "scanjob":
        return json.loads(stdout.strip().splitlines()[-1])["files"]
    if tool == "floor":
        return json.loads(stdout.strip().splitlines()[-1])["files"]
    return None  # pdu prints sizes, not counts


def measure(tool, threads, latency_us):
    scratch = tempfile.mkdtemp(prefix="slowfs-curve-")
    try:
        r0 = slowfs.requests()["total"]
        t0 = time.perf_counter()
        p = subprocess.run(command(tool, threads, scratch), stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        r1 = slowfs.requests()["total"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dict(tool=tool, threads=threads, latency_us=latency_us, wall=round(wall, 3),
                rc=p.returncode, files=files_found(tool, p.stdout or ""), requests=r1 - r0)


def table(recs, truth_files):
    lines = ["| threads | " + " | ".join(f"{t} s | {t} files/s" for t in TOOLS) + " |",
             "|---:|" + "---:|---:|" * len(TOOLS)]
    by = {(r["tool"], r["threads"]): r for r in recs}
    for n in sorted({r["threads"] for r in recs}):
        cells = []
        for t in TOOLS:
            r = by.get((t, n))
            cells += [f"{r['wall']:.2f}", f"{truth_files / r['wall']:,.0f}"] if r else ["-", "-"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(recs, truth_files, latency_us, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in TOOLS:
        pts = sorted((r["threads"], truth_files / r["wall"]) for r in recs if r["tool"] == t)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=t)
    ns = sorted({r["threads"] for r in recs})
    reqs = [r["requests"] / max(r["files"] or truth_files, 1) for r in recs if r["tool"] == "scanjob"]
    per_file = sum(reqs) / len(reqs) if reqs else 2.3
    ideal = [n / (latency_us / 1e6) / per_file for n in ns]
    ax.plot(ns, ideal, "k--", linewidth=0.8, label=f"threads ÷ latency ({per_file:.1f} requests/file)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("threads")
    ax.set_ylabel("files/s")
    ax.set_title(f"slowfs, {latency_us / 1000:g} ms per metadata request, {truth_files:,} files")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--latency-us", type=int, default=1000)
    ap.add_argument("--threads", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--tools", default="scanjob,floor,pdu")
    ap.add_argument("--plot-only", action="store_true")
    a = ap.parse_args()
    global TOOLS
    TOOLS = a.tools.split(",")
    os.makedirs(a.out, exist_ok=True)
    jsonl = os.path.join(a.out, "curve.jsonl")
    truth_files = json.load(open(slowfs.TRUTH))["files"]
    if not a.plot_only:
        slowfs.mount(a.latency_us)
        try:
            with open(jsonl, "w") as o:
                for n in [int(x) for x in a.threads.split(",")]:
                    for tool in TOOLS:
                        rec = measure(tool, n, a.latency_us)
                        print(json.dumps(rec), flush=True)
                        o.write(json.dumps(rec) + "\n")
        finally:
            slowfs.umount()
    recs = [json.loads(l) for l in open(jsonl)]
    for r in recs:
        if r["files"] not in (None, truth_files):
            print(f"WARNING: {r['tool']} -j {r['threads']} found {r['files']} files, not {truth_files}")
    md = table(recs, truth_files)
    open(os.path.join(a.out, "curve.md"), "w").write(md + "\n")
    print(md)
    plot(recs, truth_files, a.latency_us, os.path.join(a.out, "curve.png"))


if __name__ == "__main__":
    main()
