"""spark-submit entry point: `spark-submit jobs/nightly.py [flags]` ≡ `duia nightly [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["nightly", *sys.argv[1:]]))
