"""The product runs from its wheel, anywhere: the shipped configs are package data, and a
relative path resolves where it was written (the command line and `--set` from the
current directory, a config file from its own folder, the shipped configs' state from
the home, $DUIA_HOME or else the current directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from tiny_spark import tiny_spark_overrides

from duia_spark import cli
from duia_spark.config import PATH_KEYS, load_config, shipped_conf_dir

REPO = Path(__file__).resolve().parents[2]
# What `pip wheel .` reads: the build runs on a copy, so the checkout gets no build/ folder.
PACKAGING_INPUTS = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "MANIFEST.in",
    "README.md",
    "conf",
    "duia_spark",
)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A home, a working directory and a config folder, three different folders."""
    home, cwd, conf = tmp_path / "home", tmp_path / "cwd", tmp_path / "conf"
    for d in (home, cwd, conf):
        d.mkdir()
    monkeypatch.setenv("DUIA_HOME", str(home))
    monkeypatch.chdir(cwd)
    return types.SimpleNamespace(home=home, cwd=cwd, conf=conf)


def test_relative_paths_resolve_where_they_were_written(places):
    own = places.conf / "prod.yaml"
    own.write_text("lakehouse:\n  root: lh\ntrain:\n  checkpoint_dir: ../ck\n")
    cfg = load_config(own, ["mlflow.artifact_root=art", "evaluate.truth_dir=raw/truth"])
    assert cfg.lakehouse_root == str(places.conf / "lh")  # the config file's folder
    assert cfg.train.checkpoint_dir == str(places.conf.parent / "ck")
    assert cfg.mlflow.artifact_root == str(places.cwd / "art")  # --set: the current directory
    assert cfg.evaluate.truth_dir == str(places.cwd / "raw" / "truth")
    assert cfg.state_dir == str(places.home / ".duia")  # the defaults' state: the home
    assert cfg.spark.jars_cache == str(places.home / ".duia" / "ivy")
    assert cfg.tracking_uri == f"sqlite:///{places.home / '.duia' / 'mlflow.db'}"


def test_uris_and_empty_paths_stay_as_written(places):
    cfg = load_config(
        overrides=["lakehouse.root=s3a://bucket/lake", "mlflow.tracking_uri=http://mlflow:5000"]
    )
    assert cfg.lakehouse_root == "s3a://bucket/lake"
    assert cfg.tracking_uri == "http://mlflow:5000"
    assert cfg.evaluate.truth_dir == "" and cfg.score.candidate_table == ""


def test_without_duia_home_the_state_lives_in_the_current_directory(places, monkeypatch):
    monkeypatch.delenv("DUIA_HOME")
    assert load_config().lakehouse_root == str(places.cwd / ".duia" / "lakehouse")


def test_a_shipped_config_is_found_by_name_and_keeps_its_state_under_the_home(places):
    demo = yaml.safe_load((shipped_conf_dir() / "demo.yaml").read_text())
    for name in ("demo", "demo.yaml"):
        cfg = load_config(name)
        assert cfg.train.epochs == demo["train"]["epochs"]  # the demo's own setting
        assert cfg.lakehouse_root == str(places.home / ".duia" / "demo" / "lakehouse")


def test_a_missing_config_file_names_itself_and_the_shipped_ones(places, capsys):
    assert cli.main(["ingest", "--path", "raw", "--conf", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert str(places.cwd / "nope.yaml") in err and "demo.yaml" in err


def test_every_state_path_of_the_shipped_configs_is_resolved(places):
    """A new path setting under `.duia/` must join PATH_KEYS, or it lands wherever the
    process happens to run."""

    def state_paths(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from state_paths(value, f"{prefix}{key}.")
            elif isinstance(value, str) and value.removeprefix("sqlite:///").startswith(".duia"):
                yield prefix + key

    for shipped in shipped_conf_dir().iterdir():
        if shipped.name.endswith(".yaml"):
            found = set(state_paths(yaml.safe_load(shipped.read_text())))
            assert found <= set(PATH_KEYS), f"{shipped.name}: {sorted(found - set(PATH_KEYS))}"


def test_the_cli_takes_relative_path_flags_from_the_current_directory(places, monkeypatch):
    seen = {}
    real = cli.load_stage

    def recording_stage(name):
        mod = real(name)

        def run(cfg, args):
            seen[name] = (cfg, args)
            return 0

        return types.SimpleNamespace(HELP=mod.HELP, add_arguments=mod.add_arguments, run=run)

    monkeypatch.setattr(cli, "load_stage", recording_stage)
    assert cli.main(["ingest", "--path", "raw", "--lakehouse", "lake"]) == 0
    cfg, args = seen["ingest"]
    assert args.path == str(places.cwd / "raw")
    assert cfg.lakehouse_root == str(places.cwd / "lake")
    assert cli.main(["generate", "--out", "../drops"]) == 0
    assert seen["generate"][1].out == str(places.cwd.parent / "drops")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_the_wheel_runs_generate_and_ingest_from_an_empty_folder(tmp_path):
    src, dist, site, work = (tmp_path / d for d in ("src", "dist", "site", "work"))
    src.mkdir()
    for name in PACKAGING_INPUTS:
        if (REPO / name).is_dir():
            caches = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, src / name, ignore=caches)
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), "."]
    subprocess.run(build, cwd=src, check=True, timeout=300)
    (wheel,) = dist.glob("duia_spark-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True, timeout=300)
    package = site / "duia_spark"
    assert (package / "conf" / "default.yaml").is_file()

    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DUIA_HOME"}
    env |= {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*argv: str) -> str:
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    found = run(
        sys.executable,
        "-c",
        "import duia_spark, duia_spark.config as c; print(duia_spark.__file__, c.SOURCE_CHECKOUT)",
    ).split()
    assert Path(found[0]).is_relative_to(site), found  # the wheel, not the editable checkout
    assert found[1] == "None"  # no checkout: runs record no git commit

    package_before, checkout_before = _tree(package), _top_level(REPO)
    spark = [
        *[a for o in tiny_spark_overrides() for a in ("--set", o)],
        *("--set", "spark.driver_memory=1g"),
        # The Delta jars cached for this suite: the empty folder has none, and tests run offline.
        *("--set", f"spark.jars_cache={load_config().spark.jars_cache}"),
    ]
    duia = str(site / "bin" / "duia")
    days = ("--start-date", "2026-01-01", "--days", "2")
    run(duia, "generate", "--out", "raw", "--users", "30", "--items", "20", *days, *spark)
    dates = ("--date", "2026-01-01", "--end-date", "2026-01-02")
    out = run(duia, "ingest", "--path", "raw", *dates, "--lakehouse", "lake", *spark)

    assert f"→ {work / 'lake' / 'bronze' / 'events'}" in out
    for table in ("events", "events_rejected"):
        assert (work / "lake" / "bronze" / table / "_delta_log").is_dir(), table
    assert _tree(package) == package_before, "the run wrote under the installed package"
    assert _top_level(REPO) == checkout_before, "the run wrote into the checkout"
    assert not (REPO / "lake").exists() and not (package / "lake").exists()


def _top_level(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} | {f"conf/{p.name}" for p in (root / "conf").iterdir()}
