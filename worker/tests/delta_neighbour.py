"""Another writer of a scanjob Delta table, as a data platform's maintenance job would be:
delta-rs (the `deltalake` package) compacting, vacuuming, changing a property, writing a
checkpoint, appending a file; and the table as delta-rs sees it.

    python delta_neighbour.py TABLE compact|zorder|vacuum|property|checkpoint|append|change-data-feed|state [--version N]

Each command prints one line of JSON: `state` prints the version, the rows, the live files
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
