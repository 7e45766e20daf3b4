"""spark-submit entry point: `spark-submit jobs/segment.py [flags]` ≡ `duia segment [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["segment", *sys.argv[1:]]))
