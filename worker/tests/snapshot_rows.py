"""Reads the newest snapshot of a scanjob output the way the README shows (latest.json, then the
manifest, then its files, with pyarrow) and prints what it holds as one JSON line:

    python snapshot_rows.py URL                 once
    python snapshot_rows.py URL --loop STOP     again and again until the file STOP exists

{"run", "rows", "distinct_paths", "manifest_entries", "files", "bytes", "carried"}: rows read,
distinct `path` values among them, the manifest's own counts, and the rows whose first_seen is
before their last_seen (carried from an earlier night). A read that fails prints {"error": ...}
and goes on (in --loop). URL: a local directory, file:///dir or s3://bucket/prefix (AWS_*).
"""
import json
import os
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toc_queries import filesystem, read_json  # noqa: E402


def read_once(fs, base):
    latest = read_json(fs, f"{base}/latest.json")
    manifest = read_json(fs, f"{base}/{latest['manifest']}")
    files = [f"{base}/{f['path']}" for f in manifest["toc_files"]]
    table = pq.read_table(files, filesystem=fs, columns=["path", "kind", "size", "first_seen", "last_seen"])
    is_file = pc.equal(table["kind"].cast("string"), "file")
    carried = pc.less(table["first_seen"], table["last_seen"])
    return {
        "run": latest["run"],
        "rows": table.num_rows,
        "distinct_paths": pc.count_distinct(table["path"]).as_py(),
        "manifest_entries": manifest["entries"],
        "files": pc.sum(is_file.cast("int64")).as_py() or 0,
        "bytes": pc.sum(pc.if_else(is_file, table["size"], 0)).as_py() or 0,
        "carried": pc.sum(pc.fill_null(carried, False).cast("int64")).as_py() or 0,
    }


def main(argv):
    url = argv[1]
    stop = argv[3] if len(argv) > 3 and argv[2] == "--loop" else None
    fs, base = filesystem(url)
    while True:
        try:
            line = read_once(fs, base)
        except Exception as e:  # every failure is reported, not hidden
            line = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(line), flush=True)
        if stop is None or os.path.exists(stop):
            return 0 if "error" not in line else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
