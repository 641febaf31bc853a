"""Reads the newest night of a scanjob table of contents (the Delta table URL/toc) with
deltalake, as a reader with no glue would, and prints what it holds as one JSON line:

    python snapshot_rows.py URL                 once
    python snapshot_rows.py URL --loop STOP     again and again until the file STOP exists

{"version", "rows", "distinct_paths", "committed_rows", "files", "bytes", "carried"}: the version
read (night n of an output is version n), rows read, distinct `path` values among them, the
rows the version's log entries say its files hold, and the rows whose first_seen is before
their last_seen (carried from an earlier night). A read that fails prints {"error": ...} and
goes on (in --loop). URL: a local directory, file:///dir or s3://bucket/prefix (AWS_*).
"""
import json
import os
import sys

import deltalake
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from toc_queries import storage_options, table_url  # noqa: E402


def read_once(table, options):
    dt = deltalake.DeltaTable(table, storage_options=options)
    data = dt.to_pyarrow_table(columns=["path", "kind", "size", "first_seen", "last_seen"])
    adds = pa.table(dt.get_add_actions(flatten=True))
    is_file = pc.equal(data["kind"].cast("string"), "file")
    carried = pc.less(data["first_seen"], data["last_seen"])
    return {
        "version": dt.version(),
        "rows": data.num_rows,
        "distinct_paths": pc.count_distinct(data["path"]).as_py(),
        "committed_rows": pc.sum(adds["num_records"]).as_py() or 0,
        "files": pc.sum(is_file.cast("int64")).as_py() or 0,
        "bytes": pc.sum(pc.if_else(is_file, data["size"], 0)).as_py() or 0,
        "carried": pc.sum(pc.fill_null(carried, False).cast("int64")).as_py() or 0,
    }


def main(argv):
    url = argv[1]
    stop = argv[3] if len(argv) > 3 and argv[2] == "--loop" else None
    table = table_url(url)
    options = storage_options() if table.startswith("s3://") else None
    while True:
        try:
            line = read_once(table, options)
        except Exception as e:  # every failure is reported, not hidden
            line = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(line), flush=True)
        if stop is None or os.path.exists(stop):
            return 0 if "error" not in line else 1


if __name__ == "__main__":
    code = main(sys.argv)
    # Skip the native thread pools' teardown, which has aborted the interpreter under load
    # after the last line was printed (see toc_queries.py).
    sys.stdout.flush()
    os._exit(code)
