#!/usr/bin/env python3
"""Draws files/s against parallelism from the table bench/scaleout.sh prints.

    scaleout_plot.py SCALEOUT_OUTPUT.txt OUT.png
"""
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    rows = []
    for line in open(src):
        m = re.match(r"\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|\s*(\d+)\s*\|", line)
        if m:
            rows.append((int(m.group(1)), float(m.group(2)), int(m.group(3))))
    if not rows:
        sys.exit(f"no table rows in {src}")
    p, wall, fps = zip(*rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(p, fps, marker="o", label="scanjob, apply → published")
    ax.plot(p, [fps[0] * x / p[0] for x in p], "k--", linewidth=0.8, label="linear in pods")
    ax.set_xscale("log", base=2)
    ax.set_xticks(p, [str(x) for x in p])
    ax.set_xlabel("pods at once (parallelism), 8 shards")
    ax.set_ylabel("files/s")
    ax.set_title("8-shard ScanJob over slowfs at 1 ms, 2 threads per pod")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
