"""spark-submit entry point: `spark-submit jobs/train.py [flags]` ≡ `duia train [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
