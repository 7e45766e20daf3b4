"""spark-submit entry point: `spark-submit jobs/sequences.py [flags]` ≡ `duia sequences [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["sequences", *sys.argv[1:]]))
