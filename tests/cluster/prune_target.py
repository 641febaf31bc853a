#!/usr/bin/env python3
"""prune_target.py TARGET_DIR < cargo's JSON messages (--message-format=json-render-diagnostics)

Deletes the workspace's own build outputs that this build did not produce from TARGET_DIR's
release/deps and release/examples: the test binaries, binaries and libraries of earlier builds
whose dependencies, features or flags differed (their hashes differ). Cargo never removes them,
and each such change leaves ~5 GiB of test binaries in a target directory kept across runs.
Dependencies' outputs are left alone: only targets of packages whose manifest lies in the
workspace are considered, and only names that no package in Cargo.lock's registry part has.
Prints what it freed.
"""
import json
import os
import re
import sys

# A build output in deps/ or examples/: lib<crate>-<hash>.rlib, <crate>-<hash>, <crate>-<hash>.d, …
OUTPUT = re.compile(r"^(?:lib)?([A-Za-z0-9_]+)-([0-9a-f]{16})(?:\..*)?$")


def main():
    target = sys.argv[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    names, keep, inodes = set(), set(), set()
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if not msg.get("manifest_path", "").startswith(root + os.sep):
            continue
        names.add(msg["target"]["name"].replace("-", "_"))
        for path in msg.get("filenames", []) + [msg.get("executable") or ""]:
            m = OUTPUT.match(os.path.basename(path))
            if m:
                keep.add((m[1], m[2]))
            # A binary is named by its uplifted copy (target/release/scanjob), a hard link of
            # deps/scanjob-<hash>: the link's inode names the file in deps.
            try:
                st = os.stat(path)
                inodes.add((st.st_dev, st.st_ino))
            except OSError:
                pass
    with open(os.path.join(root, "Cargo.lock")) as f:
        registry = {m.replace("-", "_") for m in re.findall(r'name = "([^"]+)"\nversion = "[^"]+"\nsource', f.read())}
    names -= registry
    if not keep:
        sys.exit("prune_target: no artifact of the workspace in the build's messages; nothing pruned")
    candidates = []
    for sub in ("deps", "examples"):
        folder = os.path.join(target, "release", sub)
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            m = OUTPUT.match(entry.name)
            if not m or m[1] not in names or not entry.is_file():
                continue
            st = entry.stat()
            if (st.st_dev, st.st_ino) in inodes:
                keep.add((m[1], m[2]))  # a binary's deps file, and with it its .d
            candidates.append((entry.path, (m[1], m[2]), st.st_size))
    freed, files = 0, 0
    for path, output, size in candidates:
        if output not in keep:
            freed += size
            files += 1
            os.unlink(path)
    print(f"prune_target: {files} stale files of the workspace's crates removed, {freed / 2**30:.1f} GiB freed")


if __name__ == "__main__":
    main()
