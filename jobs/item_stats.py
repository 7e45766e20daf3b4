"""spark-submit entry point: `spark-submit jobs/item_stats.py [flags]` ≡ `duia item-stats [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["item-stats", *sys.argv[1:]]))
