#!/usr/bin/env python3
"""Checks that imports run one way: from each crate's top-level modules only to modules of a
lower layer (or of the same layer, without a circle). The layers below are the architecture,
lowest first; a module missing from them, an upward import or a circle fails with the files
and lines that make it.

  python3 tests/layers.py                 every crate below
  python3 tests/layers.py --graph         also print each crate's edges
  python3 tests/layers.py --root DIR      check the crates' folders under DIR instead
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each crate: its source folder and its top-level modules by layer, lowest first. A module may
# use modules of its own layer or below; within a layer the uses must not form a circle.
CRATES = {
    "worker": ("worker/src", [
        ["error", "pathbytes", "cgroup", "schema"],
        ["shard", "fs", "summary"],
        ["store", "termination"],
        ["engine"],
        ["report", "duplicates"],
        ["insights"],
        ["plan", "scan", "hash", "night"],
        ["join"],
        ["merge"],
        ["run"],
    ]),
    "operator": ("operator/src", [
        ["error", "crd", "fixtures"],
        ["schedule", "allow"],
        ["build", "status"],
        ["observe"],
        ["decide"],
        ["apply", "metrics"],
        ["server"],
        ["controller"],
    ]),
    "contract": ("contract/src", [
        ["exit", "layout", "units"],
        ["args", "termination"],
    ]),
}
# Crate roots and binaries: they may use everything.
TOP = {"lib", "main", "flags", "bin"}


def strip(src):
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r'"(\\.|[^"\\])*"', '""', src)


def use_paths(body):
    """Expands `a::{b, c::{d, e}}` into a::b, a::c::d, a::c::e."""
    body = re.sub(r"\s+", "", body)
    m = re.match(r"^([\w:]*?)\{(.*)\}$", body)
    if not m:
        return [body.split("as")[0] if "as" in body and "::" not in body.split("as")[-1] else body]
    base, inner, parts, depth, buf = m.group(1), m.group(2), [], 0, ""
    for ch in inner:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return [p for part in parts if part for p in use_paths(base + part)]


def top_module(src_dir, path):
    rel = os.path.relpath(path, src_dir).split(os.sep)
    return rel[0][:-3] if rel[0].endswith(".rs") else rel[0]


def edges_of(src_dir):
    """(from, to) -> [file:line] for every use of another top-level module of the crate."""
    edges = {}
    for d, _, files in os.walk(src_dir):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            me = top_module(src_dir, path)
            text = strip(open(path, encoding="utf-8").read())
            found = []
            for m in re.finditer(r"\buse\s+crate::([^;]*);", text, re.S):
                line = text.count("\n", 0, m.start()) + 1
                found += [(p.split("::")[0], line) for p in use_paths(m.group(1))]
            for m in re.finditer(r"(?<!use )\bcrate::(\w+)", text):
                found.append((m.group(1), text.count("\n", 0, m.start()) + 1))
            for target, line in found:
                if target in ("self", "Error", "Result") or target == me:
                    continue
                rel = os.path.relpath(path, ROOT)
                edges.setdefault((me, target), []).append(f"{rel}:{line}")
    return edges


def circles(nodes, edges):
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {n: sorted({b for (a, b) in edges if a == n}) for n in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def check(name, src_dir, layers, show):
    layer_of = {m: i for i, layer in enumerate(layers) for m in layer}
    src = os.path.join(ROOT, src_dir)
    present = {top_module(src, os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs
               if f.endswith(".rs")}
    problems = []
    for m in sorted(present - set(layer_of) - TOP):
        problems.append(f"{name}: module `{m}` is in no layer of tests/layers.py")
    edges = {k: v for k, v in edges_of(src).items() if k[0] not in TOP and k[1] in present}
    for (a, b), where in sorted(edges.items()):
        if show:
            print(f"{name}: {a} -> {b}")
        if a in layer_of and b in layer_of and layer_of[b] > layer_of[a]:
            problems.append(f"{name}: `{a}` (layer {layer_of[a]}) uses `{b}` (layer "
                            f"{layer_of[b]}), above it: {', '.join(where[:3])}")
    for comp in circles(sorted(present - TOP), edges):
        links = [f"{a} -> {b} ({edges[(a, b)][0]})" for a in comp for b in comp if (a, b) in edges]
        problems.append(f"{name}: circle between {', '.join(comp)}: {'; '.join(links)}")
    return problems


def main():
    global ROOT
    args = sys.argv[1:]
    show = "--graph" in args
    if "--root" in args:
        ROOT = os.path.abspath(args[args.index("--root") + 1])
    problems = []
    for name, (src_dir, layers) in CRATES.items():
        problems += check(name, src_dir, layers, show)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"layers: imports run one way in {', '.join(CRATES)}")


if __name__ == "__main__":
    main()
