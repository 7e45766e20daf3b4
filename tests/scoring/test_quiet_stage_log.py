"""A stage's log on a tiny world reads as the stage's own lines: `duia train` warm-started
from the scoring world's champion (an MLflow download) and reading its samples through
Petastorm (pyarrow's deprecations, in the driver and the training process) prints no
FutureWarning and no progress bar."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
from stand_in_tqdm import stand_in_tqdm

from .conftest import scoring_world_overrides, training

VAL_DAY = training.FIRST_DAY + dt.timedelta(days=training.N_DAYS - 1)


@pytest.mark.slow
def test_a_warm_started_training_log_holds_no_future_warning_and_no_progress_bar(
    scoring_world, scoring_root, tmp_path
):
    sets = [a for o in scoring_world_overrides(scoring_root) for a in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "DUIA_DEBUG")}
    env.update(stand_in_tqdm(tmp_path / "site"))
    proc = subprocess.run(
        [sys.executable, "-m", "duia_spark.cli", "train", "--date", str(VAL_DAY)]
        + ["--no-register", *sets],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "[train] starts from the cluster memories of version 1" in log, log
    assert "[train] epoch 1/1 done" in log
    assert "FutureWarning" not in log
    assert "Downloading artifacts" not in log
