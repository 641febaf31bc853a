"""The numbers report.html draws, read from the snapshot's derived tables with DuckDB (and the
`trends` Delta table with the deltalake package), not from its summary.

    python report_tables.py OUT MANIFEST_JSON   -> JSON on stdout

directories: recursive files and bytes per path of rollup_by_directory; age: files and bytes
per time and bucket of rollup_age (its uid rows: every file has one); nights: files and bytes
of every night's `total` row of trends; duplicate_stages: groups and wasted bytes per stage of
duplicate_files (every group a candidate while the table has no stage column).
"""
import json
import os
import sys

import deltalake
import duckdb

out, manifest_path = sys.argv[1], sys.argv[2]
manifest = json.load(open(manifest_path))
con = duckdb.connect()


def view(name):
    files = [os.path.join(out, f["path"]) for f in manifest["derived"][name]]
    con.execute(
        "CREATE VIEW %s AS SELECT * FROM read_parquet([%s])"
        % (name, ", ".join("'%s'" % f.replace("'", "''") for f in files))
    )


for table in ("rollup_by_directory", "rollup_age", "duplicate_files"):
    view(table)

directories = {
    p: {"files": f, "bytes": b}
    for p, f, b in con.execute(
        "SELECT path_display, files::BIGINT, bytes::BIGINT FROM rollup_by_directory"
    ).fetchall()
}
age = {}
for time, bucket, files, size in con.execute(
    "SELECT time, bucket, sum(files)::BIGINT, sum(bytes)::BIGINT FROM rollup_age "
    "WHERE dimension = 'uid' GROUP BY 1, 2"
).fetchall():
    age.setdefault(time, {})[bucket] = {"files": files, "bytes": size}

columns = [r[0] for r in con.execute("DESCRIBE duplicate_files").fetchall()]
stage = "stage" if "stage" in columns else "'candidate'"
duplicate_stages = {
    s: {"groups": g, "wasted_bytes": w}
    for s, g, w in con.execute(
        f"SELECT {stage}, count(*), coalesce(sum(wasted_bytes), 0)::BIGINT "
        "FROM duplicate_files GROUP BY 1"
    ).fetchall()
}

trends = deltalake.DeltaTable(os.path.join(out, "trends")).to_pyarrow_table(
    columns=["scan_time", "run", "dimension", "files", "bytes"]
)
nights = sorted(
    (r["scan_time"].isoformat(), r["run"], r["files"], r["bytes"])
    for r in trends.to_pylist()
    if r["dimension"] == "total"
)

json.dump(
    {
        "directories": directories,
        "age": age,
        "nights": [{"run": r, "files": f, "bytes": b} for _, r, f, b in nights],
        "duplicate_stages": duplicate_stages,
    },
    sys.stdout,
)
sys.stdout.flush()
# deltalake's threads can keep the interpreter from exiting.
os._exit(0)
