"""spark-submit entry point: `spark-submit jobs/generate.py [flags]` ≡ `duia generate [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
