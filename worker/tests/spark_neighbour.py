"""Spark with Delta's Spark connector as another writer of a scanjob Delta table, as a data
platform's maintenance job would run it: an OPTIMIZE that rewrites the night's files and a
table property; or a count of the newest version.

    python spark_neighbour.py TABLE JARS_DIR maintain|count

Prints one line of JSON: `maintain` the operations of the table's history, newest first;
`count` the rows of the newest version.
"""
import json
import os
import sys

# The session spark_queries.py reads with (this script's folder is on sys.path).
from spark_queries import session


def main():
    table, jars_dir, command = sys.argv[1], sys.argv[2], sys.argv[3]
    spark = session(jars_dir)
    t = f"delta.`{os.path.abspath(table)}`"
    if command == "maintain":
        # Z-ordered, so even a night of one file is rewritten (a plain OPTIMIZE leaves it).
        spark.sql(f"OPTIMIZE {t} ZORDER BY (size)").collect()
        spark.sql(f"ALTER TABLE {t} SET TBLPROPERTIES ('delta.dataSkippingNumIndexedCols' = '40')")
        history = spark.sql(f"DESCRIBE HISTORY {t}").select("operation").collect()
        out = {"operations": [row.operation for row in history]}
    elif command == "count":
        out = {"rows": spark.sql(f"SELECT count(*) FROM {t}").first()[0]}
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
    # The JVM gateway's teardown can outlast the answer; the work is done.
    os._exit(0)
