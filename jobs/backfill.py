"""spark-submit entry point: `spark-submit jobs/backfill.py [flags]` ≡ `duia backfill [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["backfill", *sys.argv[1:]]))
