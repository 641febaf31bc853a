"""Checks bench/reference_scale.sh's two nights against slowfs' ground truth and prints the
step table and the check table as Markdown.

    python reference_check.py OUT
    python reference_check.py OUT --tables s3://bucket/prefix   the tables on S3 (AWS_* settings)

Reads OUT/toc (Delta: version 0 is night 1, the newest night 2) and night 2's diff tables with
DuckDB's delta extension, or the same tables below --tables; the truth is slowfs' --summary of
each night (OUT/bench/truth<n>.json). The step table needs OUT/bench/steps.tsv and is left out
without it.
"""
import csv
import json
import os
import pathlib
import sys

import duckdb


def load_extension(con, name):
    module = __import__(f"duckdb_extension_{name}")
    path = next(pathlib.Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    con.load_extension(str(path))


def s3_secret(con):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    load_extension(con, "httpfs")
    con.execute(
        "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
        [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"],
         os.environ.get("AWS_REGION", "us-east-1"), endpoint.split("://", 1)[-1],
         not endpoint.startswith("http://")])


def main():
    out = pathlib.Path(sys.argv[1]).resolve()
    truth = [json.load(open(out / f"bench/truth{n}.json")) for n in (1, 2)]
    con = duckdb.connect()
    load_extension(con, "delta")
    tables = str(out)
    if sys.argv[2:3] == ["--tables"]:
        tables = sys.argv[3].rstrip("/")
        if tables.startswith("s3://"):
            s3_secret(con)

    def one(sql):
        return con.execute(sql).fetchone()

    steps_tsv = out / "bench/steps.tsv"
    steps = list(csv.DictReader(open(steps_tsv), delimiter="\t")) if steps_tsv.exists() else []
    if steps:
        print("| night | step | wall s | peak RSS MiB | objects | MiB written |")
        print("|---|---|---:|---:|---:|---:|")
    for night in ("n1", "n2"):
        rows = [s for s in steps if s["night"] == night]
        scans = [s for s in rows if s["step"].startswith("scan ")]
        for s in rows:
            if s["step"].startswith("scan "):
                continue
            # The scans' row comes before the first step after them (a merge or a join).
            if s["step"] != "plan" and scans:
                wall = sum(float(x["seconds"]) for x in scans)
                lo = min(float(x["seconds"]) for x in scans)
                hi = max(float(x["seconds"]) for x in scans)
                rss = max(int(x["peak_rss_kib"]) for x in scans) / 1024
                n = sum(int(x["objects"]) for x in scans)
                b = sum(int(x["bytes"]) for x in scans) / 2**20
                print(f"| {night} | scan, {len(scans)} shards one after another (each {lo:.0f}-{hi:.0f} s) "
                      f"| {wall:.1f} | {rss:.0f} (max of a shard) | {n} | {b:.1f} |")
                scans = []
            print(f"| {night} | {s['step']} | {float(s['seconds']):.1f} | {int(s['peak_rss_kib']) / 1024:.0f} "
                  f"| {s['objects']} | {int(s['bytes']) / 2**20:.1f} |")
    if steps:
        print()

    checks = []
    for n, version in ((1, 0), (2, None)):
        t = truth[n - 1]
        src = f"delta_scan('{tables}/toc'" + (f", version => {version})" if version is not None else ")")
        files, dirs, size = one(
            f"SELECT count(*) FILTER (kind = 'file'), count(*) FILTER (kind = 'dir'), "
            f"sum(size) FILTER (kind = 'file') FROM {src}")
        checks += [(f"night {n}: files", files, t["files"]),
                   (f"night {n}: directories (without the root)", dirs, t["dirs"]),
                   (f"night {n}: bytes", int(size), t["total_apparent_bytes"])]
        ext = dict(con.execute(
            f"SELECT lower(extension), count(*) FROM {src} WHERE kind = 'file' GROUP BY 1").fetchall())
        want = {k.lstrip(".").lower(): v for k, v in t["ext_counts"].items()}
        got = {("" if k is None else k.lstrip(".")): v for k, v in ext.items()}
        checks.append((f"night {n}: files per extension ({len(want)} extensions)",
                       "equal" if got == want else json.dumps(got, sort_keys=True),
                       "equal" if got == want else json.dumps(want, sort_keys=True)))
    t = truth[1]
    for table, key in (("diff_added", "added"), ("diff_removed", "removed"), ("diff_changed", "changed")):
        (count,) = one(f"SELECT count(*) FROM delta_scan('{tables}/{table}') WHERE kind = 'file'")
        checks.append((f"night 2: {table} files", count, t[key]))
    (carried,) = one(
        f"SELECT count(*) FROM delta_scan('{tables}/toc') WHERE kind = 'file' AND first_seen < last_seen")
    checks.append(("night 2: files with first_seen carried (files - added)", carried, t["files"] - t["added"]))
    print("| check | scanjob | ground truth | |")
    print("|---|---:|---:|---|")
    bad = 0
    for name, got, want in checks:
        ok = got == want
        bad += not ok
        print(f"| {name} | {got:,} | {want:,} | {'ok' if ok else 'DIFFERS'} |" if isinstance(got, int)
              else f"| {name} | {got} | {want} | {'ok' if ok else 'DIFFERS'} |")
    sys.stdout.flush()
    return 1 if bad else 0


if __name__ == "__main__":
    code = main()
    os._exit(code)
