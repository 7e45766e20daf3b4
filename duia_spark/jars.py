"""Resolve Delta Lake's jars once into the project's cache (`make setup`).

After this, every Spark session loads the jars from the cache folder and needs no
network. Run: `python -m duia_spark.jars`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from duia_spark.config import load_config
from duia_spark.session import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    build_spark_session,
    delta_maven_coordinates,
    local_delta_jars,
    local_jars_dir,
)


def main() -> int:
    cfg = load_config()
    if local_delta_jars(cfg):
        print(f"Delta jars already cached in {local_jars_dir(cfg)}")
    else:
        print(f"Resolving {', '.join(delta_maven_coordinates())} from Maven Central ...")
    spark = build_spark_session(cfg, "duia-setup")
    with tempfile.TemporaryDirectory() as tmp:  # prove Delta works end to end
        spark.range(3).write.format("delta").save(f"{tmp}/t")
        n = spark.read.format("delta").load(f"{tmp}/t").count()
    spark.stop()
    jars = local_delta_jars(cfg)
    if n != 3 or not jars:
        print(f"Delta check failed: {n} rows read back, jars: {jars}", file=sys.stderr)
        return 1
    props = write_spark_submit_properties(cfg, jars)
    print(f"Delta OK with {len(jars)} jars in {local_jars_dir(cfg)}")
    print(f"spark-submit properties for these jars: {props}")
    return 0


def write_spark_submit_properties(cfg, jars: list[str]) -> Path:
    """`spark-submit --properties-file <this> jobs/<stage>.py` puts Delta on the driver's
    classpath at launch (a session built inside an already-running JVM cannot add it)."""
    path = Path(cfg.resolve_path(cfg.state_dir)) / "spark-submit.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = {
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    path.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
    return path


if __name__ == "__main__":
    sys.exit(main())
