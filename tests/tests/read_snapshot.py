"""Reads a published snapshot straight from S3 with pyarrow and prints what a reader sees.

    python read_snapshot.py s3://bucket/prefix/snapshots/<run>/manifest.json
    python read_snapshot.py --exists s3://bucket/key      prints true or false
    python read_snapshot.py --list s3://bucket/prefix     prints the keys below it, sorted

Prints JSON: the manifest, its summary, the duplicate file groups (stage, copies, paths), the
rows of the table of contents by kind, bytes in files, the
number of distinct paths, the shards the rows came from, and the errors table's rows (path and
kind). S3 settings come from AWS_*.
"""
import collections
import json
import os
import sys

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def filesystem():
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    fs = pafs.S3FileSystem(
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_override=endpoint.split("://", 1)[-1],
        scheme="http" if endpoint.startswith("http://") else "https",
    )
    return fs


def main(url):
    fs = filesystem()
    path = url[len("s3://"):]
    with fs.open_input_stream(path) as f:
        manifest = json.loads(f.read())
    base = path.rsplit("/snapshots/", 1)[0]
    with fs.open_input_stream(f"{base}/latest.json") as f:
        latest = json.loads(f.read())
    files = [f"{base}/{f['path']}" for f in manifest["toc_files"]]
    table = pq.read_table(files, filesystem=fs, columns=["path", "kind", "size", "shard"])
    kinds = collections.Counter(table.column("kind").to_pylist())
    file_sizes = pc.filter(table.column("size"), pc.equal(table.column("kind"), "file"))
    errors = []
    if manifest.get("error_files"):
        err = pq.read_table([f"{base}/{f['path']}" for f in manifest["error_files"]], filesystem=fs)
        errors = [{"path": p.decode("utf-8", "replace"), "kind": k}
                  for p, k in zip(err.column("path").to_pylist(), err.column("kind").to_pylist())]
    summary = None
    if manifest.get("summary"):
        with fs.open_input_stream(f"{base}/{manifest['summary']}") as f:
            summary = json.loads(f.read())
    duplicates = []
    dup_files = manifest.get("derived", {}).get("duplicate_files") or []
    if dup_files:
        dup = pq.read_table([f"{base}/{f['path']}" for f in dup_files], filesystem=fs,
                            columns=["stage", "copies", "paths"])
        duplicates = sorted(({"stage": s, "copies": c, "paths": sorted(p)} for s, c, p in zip(
            dup.column("stage").to_pylist(), dup.column("copies").to_pylist(),
            dup.column("paths").to_pylist())), key=lambda g: (g["stage"], g["paths"]))
    print(json.dumps({
        "manifest": manifest,
        "summary": summary,
        "duplicates": duplicates,
        "latest": latest,
        "rows": table.num_rows,
        "kinds": dict(kinds),
        "file_bytes": pc.sum(file_sizes).as_py() or 0,
        "distinct_paths": pc.count_distinct(table.column("path")).as_py(),
        "shards": sorted(set(table.column("shard").to_pylist())),
        "errors": sorted(errors, key=lambda e: e["path"]),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "--exists":
        info = filesystem().get_file_info(sys.argv[2][len("s3://"):])
        print(json.dumps(info.type != pafs.FileType.NotFound))
    elif sys.argv[1] == "--list":
        prefix = sys.argv[2][len("s3://"):].rstrip("/")
        infos = filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        print(json.dumps(sorted(i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File)))
    else:
        main(sys.argv[1])
