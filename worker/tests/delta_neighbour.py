"""Another writer of a scanjob Delta table, as a data platform's maintenance job would be:
delta-rs (the `deltalake` package) compacting, vacuuming, changing a property, writing a
checkpoint, appending a file; and the table as delta-rs sees it.

    python delta_neighbour.py TABLE compact|zorder|vacuum|property|checkpoint|append|change-data-feed|state|stats|layout [--version N]

Each command prints one line of JSON: `layout` lists the version's files with their rows, their
first and last path (hex) and whether their rows are in path order, and the pairs of files
whose ranges of paths overlap; `stats` compares the statistics of every add action of
the version, as delta-rs parses them, with the file's own rows read by pyarrow; `state` prints the version, the rows, the live files
(as the log says, relative to the table) and the scanjob.run of the version's commit.
"""
import json
import os
import sys

import deltalake


def main():
    table, command = sys.argv[1], sys.argv[2]
    version = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--version" else None
    dt = deltalake.DeltaTable(table, version=version)
    out = {"command": command}
    if command == "compact":
        out["metrics"] = dt.optimize.compact()
    elif command == "zorder":
        # An OPTIMIZE that rewrites every file, a single one included (compaction leaves a
        # file alone that has nothing to be merged with), ordered by the first plain column.
        plain = [f.name for f in dt.schema().fields if getattr(f.type, "type", None) in ("string", "long", "integer")]
        out["metrics"] = dt.optimize.z_order(plain[:1])
    elif command == "vacuum":
        out["removed"] = dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    elif command == "property":
        dt.alter.set_table_properties({"delta.dataSkippingNumIndexedCols": "40"})
    elif command == "change-data-feed":
        dt.alter.set_table_properties({"delta.enableChangeDataFeed": "true"})
    elif command == "checkpoint":
        dt.create_checkpoint()
    elif command == "append":
        # One row of the table again, as a file another job appended.
        deltalake.write_deltalake(table, dt.to_pyarrow_table().slice(0, 1), mode="append")
    elif command == "stats":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        mismatches, checked = [], []
        for action in actions:
            rows = pq.read_table(os.path.join(table, action["path"]))
            if action["num_records"] != rows.num_rows:
                mismatches.append([action["path"], "numRecords", action["num_records"], rows.num_rows])
            for column in rows.column_names:
                if rows.num_rows == 0 or action.get(f"min.{column}") is None and action.get(f"max.{column}") is None:
                    # No bounds recorded (booleans, binary paths, lists): only the columns
                    # checked are named in the answer.
                    continue
                checked.append(column)
                values = rows.column(column)
                if pa.types.is_dictionary(values.type):
                    values = values.cast(values.type.value_type)
                if pa.types.is_string_view(values.type):
                    values = values.cast(pa.string())
                if pa.types.is_timestamp(values.type):
                    # Delta's statistics are milliseconds: the minimum down, the maximum up.
                    values = values.cast(pa.int64())
                    got = [int(action[f"{k}.{column}"].timestamp() * 1000) if action[f"{k}.{column}"] else None for k in ("min", "max")]
                    mm = pc.min_max(values).as_py()
                    want = [mm["min"] // 1000 if mm["min"] is not None else None, -(-mm["max"] // 1000) if mm["max"] is not None else None]
                    ok = got == want or (got[0] == want[0] and got[1] in (want[1], (mm["max"] or 0) // 1000))
                else:
                    mm = pc.min_max(values).as_py()
                    got, want = [action[f"min.{column}"], action[f"max.{column}"]], [mm["min"], mm["max"]]
                    if isinstance(want[0], str):
                        # Long strings are cut to a prefix (the maximum with a high code point after).
                        ok = got[0] == want[0][: len(got[0])] and want[1] <= got[1]
                    else:
                        ok = got == want
                nulls = action.get(f"null_count.{column}")
                if not ok or (nulls is not None and nulls != values.null_count):
                    mismatches.append([action["path"], column, str(got), str(want), nulls, values.null_count])
        out["files"] = len(actions)
        out["columns"] = sorted(set(checked))
        out["mismatches"] = mismatches
    elif command == "layout":
        import pyarrow.parquet as pq

        files = []
        for uri in dt.file_uris():
            path = os.path.relpath(uri.removeprefix("file://"), table)
            paths = pq.read_table(os.path.join(table, path), columns=["path"]).column("path").to_pylist()
            files.append({
                "path": path,
                "rows": len(paths),
                "min": min(paths).hex(),
                "max": max(paths).hex(),
                "in_order": all(a <= b for a, b in zip(paths, paths[1:])),
            })
        files.sort(key=lambda f: bytes.fromhex(f["min"]))
        out["files"] = files
        out["overlaps"] = [
            [a["path"], b["path"]] for a, b in zip(files, files[1:]) if bytes.fromhex(b["min"]) <= bytes.fromhex(a["max"])
        ]
    elif command == "state":
        out["version"] = dt.version()
        out["rows"] = dt.to_pyarrow_table().num_rows
        out["files"] = sorted(dt.file_uris())
        # The history as the newest version has it (loaded at an older one, deltalake numbers
        # the commits from there).
        history = deltalake.DeltaTable(table).history()
        out["run"] = next((h.get("scanjob.run") for h in history if h.get("version") == dt.version()), None)
    else:
        raise SystemExit(f"unknown command {command}")
    out["version_after"] = deltalake.DeltaTable(table).version()
    print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
    # The native thread pools' teardown has aborted the interpreter under load after the work
    # was done.
    os._exit(0)
