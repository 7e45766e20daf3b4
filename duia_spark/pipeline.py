"""The nightly pipeline's order, and the run ledger that makes re-runs skip finished work.

Pure parts only: which stages run, in which order, for which flags; `stages/nightly.py`
does the I/O (runs them, writes the ledger).
"""

from __future__ import annotations

from pyspark.sql import types as T

NIGHTLY_STAGES: tuple[str, ...] = (
    "ingest",
    "segment",
    "sequences",
    "item-stats",
    "samples",
    "train",
    "train-baselines",
    "evaluate",
    "score",
)

LEDGER_SCHEMA = T.StructType(
    [
        T.StructField("run_date", T.DateType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("status", T.StringType(), False),  # running | succeeded | failed
        T.StructField("started_at", T.TimestampType(), True),
        T.StructField("finished_at", T.TimestampType(), True),
        T.StructField("seconds", T.DoubleType(), True),
        T.StructField("message", T.StringType(), True),
    ]
)


def plan_stages(
    all_stages: tuple[str, ...],
    succeeded: set[str],
    from_stage: str | None = None,
    only: list[str] | None = None,
    force: bool = False,
) -> list[str]:
    """Stages to run now, in pipeline order.

    `only` runs exactly those; `from_stage` runs it and everything after; otherwise every
    stage not yet succeeded for the date (a failed run resumes where it stopped).
    `force` re-runs stages that already succeeded.
    """
    for name in [*(only or []), *([from_stage] if from_stage else [])]:
        if name not in all_stages:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(all_stages)}")
    if only:
        return [s for s in all_stages if s in only]
    chosen = list(all_stages)
    if from_stage:
        chosen = chosen[chosen.index(from_stage) :]
        return chosen
    return [s for s in chosen if force or s not in succeeded]


def baseline_variants(baselines: list[str], main_variant: str) -> list[str]:
    """The variants the `train-baselines` stage trains beside the main model (each
    unregistered, continuing from its own last run): evaluate.baselines without the main
    variant."""
    return [v for v in baselines if v != main_variant]


def require_raw(raw_path: str | None) -> str:
    """The raw drops folder the ingest stage reads; a night without one cannot ingest."""
    if raw_path is None:
        raise ValueError("nightly needs --raw PATH (the raw drops) to run the ingest stage")
    return raw_path
