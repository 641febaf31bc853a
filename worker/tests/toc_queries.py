"""Reads a scanjob table of contents the way a data team would, and prints the answers as JSON.

    python toc_queries.py URL        URL: a local directory, file:///dir or s3://bucket/prefix

pyarrow finds the files through latest.json and the snapshot manifest and reads them; DuckDB runs
the queries of the talk's "bonus round": over the local Parquet files with its own reader, over
the Arrow table pyarrow read for s3://. S3 settings come from the AWS_* environment variables.
"""
import json
import os
import sys

import duckdb
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def filesystem(url):
    if url.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        scheme = "http" if endpoint.startswith("http://") else "https"
        fs = pafs.S3FileSystem(
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region=os.environ.get("AWS_REGION", "us-east-1"),
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme=scheme,
        )
        return fs, url[len("s3://"):].rstrip("/")
    if url.startswith("file://"):
        url = url[len("file://"):]
    return pafs.LocalFileSystem(), os.path.abspath(url)


def read_json(fs, path):
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def main(url):
    fs, base = filesystem(url)
    latest = read_json(fs, f"{base}/latest.json")
    manifest = read_json(fs, f"{base}/{latest['manifest']}")
    files = [f"{base}/{f['path']}" for f in manifest["toc_files"]]
    table = pq.read_table(files, filesystem=fs)
    con = duckdb.connect()
    if isinstance(fs, pafs.LocalFileSystem):
        con.read_parquet(files).create_view("toc")
    else:
        con.register("toc", table)
    if con.execute("SELECT count(*) FROM toc").fetchone()[0] != table.num_rows:
        sys.exit("DuckDB and pyarrow disagree on the number of rows")

    def rows(sql):
        return [list(r) for r in con.execute(sql).fetchall()]

    def top(column, measure):
        agg = "count(*)" if measure == "count" else "sum(size)"
        return rows(
            f"SELECT {column}, {agg} AS m FROM toc WHERE kind = 'file' "
            f"GROUP BY {column} ORDER BY m DESC, {column} LIMIT 5"
        )

    files, size = con.execute("SELECT count(*), sum(size) FROM toc WHERE kind = 'file'").fetchone()
    answers = {
        "run": manifest["run"],
        "rows": table.num_rows,
        "files": files,
        "size": int(size),
        "per_extension": dict(rows("SELECT extension, count(*) FROM toc WHERE kind = 'file' GROUP BY 1")),
        "top5": {f"{c}_by_{m}": top(c, m) for c in ("dirname", "extension", "uid") for m in ("count", "size")},
    }
    print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1])
