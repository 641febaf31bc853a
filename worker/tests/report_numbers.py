"""The report's numbers computed independently with DuckDB from a snapshot's ToC files.

    python report_numbers.py OUT MANIFEST_JSON   -> JSON on stdout

Files are regular files; bytes the sum of their size. Top lists rank by the value, then by
key; a missing project or extension is the empty string. Ages are measured from the
summary's `created` time, in the buckets < 30 d, < 90 d, < 1 y, < 3 y, older (plus future and
unknown when they hold files).
"""
import calendar
import json
import os
import sys
import time

import duckdb

out, manifest_path, created = sys.argv[1], sys.argv[2], sys.argv[3]
manifest = json.load(open(manifest_path))
files = [os.path.join(out, f["path"]) for f in manifest["toc_files"]]
con = duckdb.connect()
con.execute(
    "CREATE VIEW toc AS SELECT * FROM read_parquet([%s])"
    % ", ".join("'%s'" % f.replace("'", "''") for f in files)
)
con.execute("CREATE VIEW f AS SELECT * FROM toc WHERE kind = 'file'")


def groups(key, limit=None, order="bytes"):
    other = "files" if order == "bytes" else "bytes"
    q = (
        f"SELECT {key} AS key, count(*) AS files, sum(size)::BIGINT AS bytes FROM f "
        f"GROUP BY 1 ORDER BY {order} DESC, key"
    )
    if limit:
        q += f" LIMIT {limit}"
    return [{"key": k, "files": n, "bytes": b} for k, n, b in con.execute(q).fetchall()]


def top(key):
    return {"by_files": groups(key, 5, "files"), "by_bytes": groups(key, 5, "bytes")}


ext = "coalesce(extension::VARCHAR, '')"
proj = "coalesce(project::VARCHAR, '')"
kinds = dict(con.execute("SELECT kind::VARCHAR, count(*) FROM toc GROUP BY 1").fetchall())
files_n, bytes_n = con.execute("SELECT count(*), coalesce(sum(size), 0)::BIGINT FROM f").fetchone()

stamp, _, frac = created.rstrip("Z").partition(".")
created_ns = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")) * 10**9 + int(
    (frac or "0").ljust(9, "0")[:9]
)
DAY = 86400 * 10**9
age = {}
for column in ("mtime", "atime"):
    rows = dict(
        (b, (n, s))
        for b, n, s in con.execute(
            f"""SELECT CASE WHEN {column} IS NULL THEN 'unknown'
                        WHEN {created_ns} - epoch_ns({column}) < 0 THEN 'future'
                        WHEN {created_ns} - epoch_ns({column}) < 30 * {DAY} THEN '< 30 d'
                        WHEN {created_ns} - epoch_ns({column}) < 90 * {DAY} THEN '< 90 d'
                        WHEN {created_ns} - epoch_ns({column}) < 365 * {DAY} THEN '< 1 y'
                        WHEN {created_ns} - epoch_ns({column}) < 3 * 365 * {DAY} THEN '< 3 y'
                        ELSE 'older' END, count(*), sum(size)::BIGINT FROM f GROUP BY 1"""
        ).fetchall()
    )
    buckets = []
    for b in ["< 30 d", "< 90 d", "< 1 y", "< 3 y", "older", "future", "unknown"]:
        n, s = rows.get(b, (0, 0))
        if n or b not in ("future", "unknown"):
            buckets.append({"bucket": b, "files": n, "bytes": s})
    age[column] = buckets

json.dump(
    {
        "totals": {
            "files": files_n,
            "bytes": bytes_n,
            "directories": kinds.get("dir", 0),
            "symlinks": kinds.get("symlink", 0),
        },
        "by_extension": groups(ext),
        "by_project": groups(proj),
        "top_directories": top("dirname::VARCHAR"),
        "top_extensions": top(ext),
        "top_owners": top("uid::VARCHAR"),
        "top_projects": top(proj),
        "age": age,
    },
    sys.stdout,
)
