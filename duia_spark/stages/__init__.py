"""Stage runners: the I/O edge of each pipeline stage (config → session → read → transform → write).

Each stage module defines `NAME`, `add_arguments(parser)` and `run(cfg, args) -> int`.
`duia <stage>` and `spark-submit jobs/<stage>.py` both dispatch here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Stage name → module under duia_spark.stages, in nightly order where it applies.
STAGE_MODULES: dict[str, str] = {
    "generate": "generate",
    "ingest": "ingest",
    "segment": "segment",
    "sequences": "sequences",
    "item-stats": "item_stats",
    "samples": "samples",
    "backfill": "backfill",
    "train": "train",
    "evaluate": "evaluate",
    "nightly": "nightly",
    "score": "score",
}


def load_stage(name: str) -> ModuleType:
    return importlib.import_module(f"duia_spark.stages.{STAGE_MODULES[name]}")
