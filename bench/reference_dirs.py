#!/usr/bin/env python3
"""Writes the directory table of a reference-scale store without creating any file.

    reference_dirs.py OUT.tsv [--files 16000000] [--seed 42]

Uses mktree.py's own planning functions (../shared/bench), so the directory tree and the
files-per-directory law are exactly those of a generated tree of that size: ~files/31.4
directories, preferential attachment, a handful of hot directories, Lomax elsewhere. Each line:
path (relative, '/'-separated) TAB direct entries (files + subdirectories).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "bench"))
import mktree  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=16_000_000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    t0 = time.time()
    parent, depth, names, nchild = mktree.plan_dirs(a.seed, a.files)
    counts, hot = mktree.plan_counts(a.seed, a.files, parent, depth, nchild)
    paths = [""] * len(parent)
    for i in range(1, len(parent)):  # parents always precede children
        p = paths[parent[i]]
        paths[i] = names[i] if not p else p + "/" + names[i]
    with open(a.out, "w") as f:
        for i, p in enumerate(paths):
            f.write("%s\t%d\n" % (p, counts[i] + nchild[i]))
    print("%d directories, %d files, %d hot directories (largest %d files), %.1f s"
          % (len(parent), sum(counts), len(hot), max(counts), time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
