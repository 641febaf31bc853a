#!/usr/bin/env python3
"""Writes the directory table of a reference-scale store without creating any file.

    reference_dirs.py OUT.tsv [--files 16000000] [--seed 42] [--big-subtree 10000000 --huge-dir 2000000]

Uses mktree.py's own planning functions (testkit/mktree.py), so the directory tree and the
files-per-directory law are exactly those of a generated tree of that size: ~files/31.4
directories, preferential attachment, a handful of hot directories, Lomax elsewhere. Each line:
path (relative, '/'-separated) TAB direct entries (files + subdirectories).

--big-subtree F --huge-dir H reshapes the same tree to the worst case a planner meets: the
heaviest top-level directory is rescaled to hold F of the files, one directory inside it (its
largest) holds H files by itself, and the rest of the store is rescaled to keep the total.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testkit"))
import mktree  # noqa: E402


def reshape(parent, counts, total, big, huge):
    """Rescales file counts so one top-level subtree holds `big` files, `huge` of them in one
    directory, and the rest of the tree holds `total - big`."""
    top = [0] * len(parent)  # the top-level ancestor of each directory (0 for the root)
    for i in range(1, len(parent)):
        top[i] = i if parent[i] == 0 else top[parent[i]]
    per_top = {}
    for i, c in enumerate(counts):
        per_top[top[i]] = per_top.get(top[i], 0) + c
    heavy = max((t for t in per_top if t), key=lambda t: per_top[t])
    inside = [i for i in range(len(parent)) if top[i] == heavy]
    huge_dir = max(inside, key=lambda i: counts[i])
    rest_in = sum(counts[i] for i in inside) - counts[huge_dir]
    rest_out = sum(counts) - sum(counts[i] for i in inside)
    f_in = (big - huge) / rest_in
    f_out = (total - big) / rest_out
    print("reshaped: top-level subtree %r holds %d files, its directory %r holds %d"
          % (heavy, big, huge_dir, huge), file=sys.stderr)
    out = []
    for i, c in enumerate(counts):
        if i == huge_dir:
            out.append(huge)
        else:
            out.append(round(c * (f_in if top[i] == heavy else f_out)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=16_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--big-subtree", type=int, default=0)
    ap.add_argument("--huge-dir", type=int, default=0)
    a = ap.parse_args()
    t0 = time.time()
    parent, depth, names, nchild = mktree.plan_dirs(a.seed, a.files)
    counts, hot = mktree.plan_counts(a.seed, a.files, parent, depth, nchild)
    paths = [""] * len(parent)
    for i in range(1, len(parent)):  # parents always precede children
        p = paths[parent[i]]
        paths[i] = names[i] if not p else p + "/" + names[i]
    if a.big_subtree:
        counts = reshape(parent, counts, a.files, a.big_subtree, a.huge_dir)
    with open(a.out, "w") as f:
        for i, p in enumerate(paths):
            f.write("%s\t%d\n" % (p, counts[i] + nchild[i]))
    print("%d directories, %d files, %d hot directories (largest %d files), %.1f s"
          % (len(parent), sum(counts), len(hot), max(counts), time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
