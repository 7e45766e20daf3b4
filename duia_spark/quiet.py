"""Quiet logs: a run's output reads as the stages' own lines.

Other libraries print notices on every run that nobody running the pipeline can act on:
Petastorm calls pyarrow APIs deprecated since pyarrow 5 to 11 (a FutureWarning per call,
in every process that opens a reader), MLflow draws a progress bar for each artifact it
downloads (one per file of a model: dozens per load), and logging a model adds a few
hints of its own. `quiet_logs()` turns exactly these off, where a command starts
(`cli.main`) and wherever a Spark session is built (`session.py`): in this process, and
in the processes it starts, since Spark's Python workers and TorchDistributor's training
processes inherit the filters through PYTHONWARNINGS (`spark.executorEnv` carries it to a
cluster's executors). Anything not listed here still prints. `duia <stage> --debug`, or
DUIA_DEBUG=1 in the environment, shows everything.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

DEBUG_ENV = "DUIA_DEBUG"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

# (category, start of the message) of warnings filtered in every process of a run.
# Each becomes a PYTHONWARNINGS entry, so a message here holds no ':' or ','.
WORKER_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # Petastorm 0.12 on pyarrow 14: the legacy ParquetDataset API, on every reader
    (FutureWarning, "'ParquetDataset."),
    (FutureWarning, "ParquetDatasetPiece is deprecated"),
    (FutureWarning, "Passing 'use_legacy_dataset=True'"),
    (FutureWarning, "Specifying the 'metadata_nthreads' argument"),
    (FutureWarning, "pyarrow.localfs is deprecated"),
    (FutureWarning, "pyarrow.LocalFileSystem is deprecated"),
    # torch, on the read-only Arrow buffers of Petastorm's batches (never written to)
    (UserWarning, "The given NumPy array is not writable"),
)

# ... and in the driver alone: MLflow logging a model whose signature is stated.
DRIVER_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, "Hint: Inferred schema contains integer column(s)"),
    (UserWarning, "\x1b[1;33mAn input example was not provided"),  # MLflow colours it
)

# (logger, start of the message) of log lines dropped.
LOG_LINES: tuple[tuple[str, str], ...] = (
    # make_spark_converter on every training run: expected for our column types and sizes
    ("petastorm.spark.spark_dataset_converter", "Converting floating-point columns"),
    ("petastorm.spark.spark_dataset_converter", "The median size"),
    # the pyfunc is a class of this package, shipped with the model
    ("mlflow.pyfunc", "Passing a Python object as `python_model`"),
    # the baseline guard registers a baseline run's logged model: MLflow says where it is
    ("mlflow.tracking._model_registry.fluent", "Run with id"),
)

# Loggers whose lines below WARNING are dropped: "Started/Finished local training",
# "Creating initial MLflow database tables".
INFO_LOGGERS: tuple[str, ...] = ("TorchDistributor", "mlflow.store.db.utils")

_installed = False


class _DropLines(logging.Filter):
    def __init__(self, starts: tuple[str, ...] = (), below: int = logging.NOTSET) -> None:
        super().__init__()
        self.starts, self.below = starts, below

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.below:
            return False
        return not (self.starts and record.getMessage().startswith(self.starts))


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def python_warnings_option() -> str:
    """WORKER_WARNINGS as a PYTHONWARNINGS value."""
    return ",".join(f"ignore:{message}:{cat.__name__}" for cat, message in WORKER_WARNINGS)


def quiet_logs(debug: bool = False) -> None:
    """Filter the known notices in this process and the ones it starts (idempotent).
    With `debug` (the CLI's --debug) or DUIA_DEBUG set, filter nothing, here or later."""
    global _installed
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if _installed or debugging():
        return
    _installed = True
    for category, message in WORKER_WARNINGS + DRIVER_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)
    ours, inherited = python_warnings_option(), os.environ.get("PYTHONWARNINGS", "")
    if ours not in inherited:  # the caller's own entries come last: they win
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [ours, inherited]))
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")
    for name in {logger for logger, _ in LOG_LINES}:
        starts = tuple(start for logger, start in LOG_LINES if logger == name)
        logging.getLogger(name).addFilter(_DropLines(starts))
    for name in INFO_LOGGERS:
        logging.getLogger(name).addFilter(_DropLines(below=logging.WARNING))


def spark_settings() -> dict[str, str]:
    """Spark settings that carry the filters to executors' Python workers ({} when
    nothing is filtered)."""
    if not _installed or debugging():
        return {}
    return {"spark.executorEnv.PYTHONWARNINGS": os.environ["PYTHONWARNINGS"]}
