"""spark-submit entry point: `spark-submit jobs/samples.py [flags]` ≡ `duia samples [flags]`."""

import sys

from duia_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["samples", *sys.argv[1:]]))
