"""duia-spark: PLE + DUIA ranking pipeline on Spark."""
