"""spark-submit entry point: `spark-submit jobs/ingest.py [flags]` ≡ `duia ingest [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
