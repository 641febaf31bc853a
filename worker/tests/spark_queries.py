"""Reads a scanjob table of contents with Spark and Delta's Spark connector, and prints JSON.

    python spark_queries.py OUT JARS_DIR VERSION AT_MS

OUT is a local output location; the table of contents is the Delta table OUT/toc. JARS_DIR
holds Delta's Spark jars (delta-spark, delta-storage). Prints the counts of the newest version,
of version VERSION (`versionAsOf`) and of the version current at AT_MS milliseconds since the
epoch (`timestampAsOf`, which Delta resolves with the log objects' modification times, as the
tables have no in-commit timestamps).
"""
import datetime
import json
import os
import pathlib
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def answers(df):
    files = df.where(F.col("kind") == "file")
    size = files.agg(F.sum("size")).first()[0]
    return {
        "rows": df.count(),
        "files": files.count(),
        "size": int(size or 0),
        "per_extension": {r[0]: r[1] for r in files.groupBy("extension").count().collect()},
    }


def session(jars_dir):
    """A local Spark session with Delta's Spark connector from the jars in JARS_DIR."""
    jars = ",".join(str(p) for p in sorted(pathlib.Path(jars_dir).glob("*.jar")))
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def main():
    out, jars_dir, version, at_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    table = os.path.abspath(out) + "/toc"
    spark = session(jars_dir)
    at = datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.timezone.utc)
    reader = spark.read.format("delta")
    result = {
        "newest": answers(reader.load(table)),
        "version": answers(reader.option("versionAsOf", version).load(table)),
        "at": answers(
            spark.read.format("delta")
            .option("timestampAsOf", at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
            .load(table)
        ),
        "newest_sql": spark.sql(f"SELECT count(*) FROM delta.`{table}`").first()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
