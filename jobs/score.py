"""spark-submit entry point: `spark-submit jobs/score.py [flags]` ≡ `duia score [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
