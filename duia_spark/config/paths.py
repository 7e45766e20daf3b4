"""Where configs and state live: the shipped configs (package data of the wheel, or the
checkout's `conf/`), the home of the shipped state (`$DUIA_HOME`, else the current
directory), and how a relative path is anchored where it was written."""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

HOME_ENV = "DUIA_HOME"
_BESIDE_PACKAGE = Path(__file__).resolve().parents[2]
# The source checkout the package runs from (an editable install), None for an installed
# wheel: a run records the checkout's git commit.
SOURCE_CHECKOUT: Path | None = _BESIDE_PACKAGE if (_BESIDE_PACKAGE / ".git").exists() else None
# Config values that name a local path: a relative one is made absolute where it was written.
PATH_KEYS = (
    "state_dir",
    "spark.jars_cache",
    "lakehouse.root",
    "train.checkpoint_dir",
    "train.petastorm_cache_dir",
    "evaluate.truth_dir",
    "mlflow.tracking_uri",
    "mlflow.artifact_root",
    "score.candidate_table",
)
SQLITE = "sqlite:///"


def shipped_conf_dir() -> Traversable:
    """The shipped configs: `duia_spark/conf/` in an installed wheel (read through
    importlib.resources, so a zipped wheel on `--py-files` works too); in a source checkout,
    the top-level `conf/` folder the wheel's copy is built from."""
    packaged = resources.files("duia_spark") / "conf"
    return packaged if packaged.is_dir() else _BESIDE_PACKAGE / "conf"


DEFAULT_CONF = shipped_conf_dir() / "default.yaml"


def duia_home() -> Path:
    """Where the shipped configs' state (`.duia/...`) lives: $DUIA_HOME, else the current
    directory."""
    return Path(os.path.abspath(os.path.expanduser(os.environ.get(HOME_ENV) or os.curdir)))


def anchor_path(value: str, base: Path) -> str:
    """`value` as an absolute path, a relative one taken from `base`. A URI (`s3a://...`)
    and "" (off) stay as they are; `sqlite:///rel.db` becomes `sqlite:////<base>/rel.db`."""
    if value.startswith(SQLITE):
        return SQLITE + anchor_path(value[len(SQLITE) :], base)
    if not value or "://" in value:
        return value
    return os.path.normpath(base / Path(value).expanduser())
