"""spark-submit entry point: `spark-submit jobs/evaluate.py [flags]` ≡ `duia evaluate [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
