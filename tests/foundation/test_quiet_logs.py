"""Other libraries' known notices are filtered in a run's processes and the ones they
start, MLflow draws no progress bars, and --debug (DUIA_DEBUG) shows everything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from stand_in_tqdm import stand_in_tqdm

from duia_spark import cli, quiet

# Warns in this process and in a child Python, as Petastorm does on the driver and in
# every training process; logs as Petastorm's converter does.
NOTICES = textwrap.dedent(
    """
    import logging, subprocess, sys, warnings
    from duia_spark.quiet import quiet_logs

    quiet_logs()
    logging.basicConfig(format="%(message)s")
    warnings.warn("'ParquetDataset.pieces' attribute is deprecated", FutureWarning)
    warnings.warn("our own notice", FutureWarning)
    converter = logging.getLogger("petastorm.spark.spark_dataset_converter")
    converter.warning("Converting floating-point columns to float32")
    converter.warning("a converter line of another kind")
    subprocess.run([sys.executable, "-c", "import warnings; warnings.warn("
        "\\"Passing 'use_legacy_dataset=True' to get the legacy behaviour\\", FutureWarning);"
        "warnings.warn('a notice in the child', FutureWarning)"], check=True)
    """
)


def _run(script: str, extra_env: dict[str, str], *args: str) -> str:
    """stdout + stderr of `python -c script args`, in an environment without filters (nor
    the progress-bar setting an earlier quiet_logs() in this test process exported)."""
    unset = ("PYTHONWARNINGS", quiet.DEBUG_ENV, quiet.PROGRESS_BAR_ENV)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, **extra_env},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_known_notices_are_filtered_in_the_process_and_its_children_and_nothing_else():
    out = _run(NOTICES, {})
    assert "our own notice" in out and "a notice in the child" in out
    assert "a converter line of another kind" in out
    assert "ParquetDataset" not in out and "use_legacy_dataset" not in out
    assert "Converting floating-point" not in out
    assert "Invalid -W option" not in out  # every entry is a valid PYTHONWARNINGS entry


def test_debug_shows_every_notice():
    out = _run(NOTICES, {quiet.DEBUG_ENV: "1"})
    for text in ("ParquetDataset", "use_legacy_dataset", "Converting floating-point"):
        assert text in out


# Downloads a small folder through MLflow, with a stand-in tqdm on the path when the
# real one is not installed: MLflow draws its bar with whichever it imports.
DOWNLOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from duia_spark.quiet import quiet_logs

    quiet_logs(debug=sys.argv[1] == "debug")
    import mlflow

    src, dst = Path(sys.argv[2]), Path(sys.argv[3])
    mlflow.artifacts.download_artifacts(artifact_uri=src.as_uri(), dst_path=str(dst))
    print("downloaded", len(list(dst.rglob("*.txt"))))
    """
)


def test_mlflow_draws_no_download_progress_bars_unless_debugging(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    for i in range(3):
        (src / f"file{i}.txt").write_text("x")
    path = stand_in_tqdm(tmp_path / "site")
    quiet_out = _run(DOWNLOAD, path, "quiet", str(src), str(tmp_path / "a"))
    assert "downloaded 3" in quiet_out and "Downloading artifacts" not in quiet_out
    debug_out = _run(DOWNLOAD, path, "debug", str(src), str(tmp_path / "b"))
    assert "downloaded 3" in debug_out and "Downloading artifacts" in debug_out


def test_the_debug_flag_is_seen_before_the_stages_are_imported():
    assert cli._wants_debug(["score", "--date", "2026-01-08", "--debug"])
    assert not cli._wants_debug(["score", "--date", "2026-01-08"])
