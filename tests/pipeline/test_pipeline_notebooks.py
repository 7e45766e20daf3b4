"""The notebooks under notebooks/ run top to bottom against a tiny lakehouse and MLflow
store made by the real pipeline (generate → ingest → backfill → one nightly run), with
their parameters cell replaced; a cell that raises fails the test. They are committed
without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
KERNEL = "duia-notebook-tests"


@pytest.fixture(scope="module")
def pipeline_state(nightly_world) -> list[str]:
    """The overrides that point at the shared nightly world (tests/pipeline/conftest.py)."""
    return nightly_world.overrides


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec that runs this interpreter, found through JUPYTER_PATH (offline).
    Kernels run in notebooks/; their home is the checkout (its Delta jars cache)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name=KERNEL, prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("DUIA_HOME", str(REPO))
        yield KERNEL


def execute(path: Path, kernel: str, **parameters) -> str:
    """Run a notebook with `parameters` set in its parameters cell; -> its text output,
    with "[figure]" for each plot it showed."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    # The defaults stay (other knobs of the notebook); the test's values follow them.
    cell.source += "\n\n# injected by the test\n" + "\n".join(
        f"{k} = {v!r}" for k, v in parameters.items()
    )
    NotebookClient(
        nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    ).execute()  # raises CellExecutionError if any cell raises
    return "\n".join(
        "[figure]"
        if "image/png" in out.get("data", {})
        else out.get("text", "") or out.get("data", {}).get("text/plain", "")
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.outputs
    )


def test_notebooks_are_committed_without_outputs_and_with_a_parameters_cell():
    assert [p.name for p in NOTEBOOKS] == [
        "01_activity_and_sequences.ipynb",
        "02_cluster_memory.ipynb",
        "03_run_comparison.ipynb",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), path.name
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert "conf_file" in code[0].source and "overrides" in code[0].source


# What each notebook prints only when it found its data.
EXPECTED = {
    "01_activity_and_sequences": ["activity_date", "mean exposures", "fewer than 5 history"],
    "02_cluster_memory": ["champion: v", "users of ", "nearest items"],
    "03_run_comparison": ["ple+duia", "uvc", "udt_s"],
}


# What they print when an input is missing.
MISSING = ["no table at", "no 'champion'", "no experiment", " runs in '", "no simulated feed"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_a_nightly_run(path, pipeline_state, kernel):
    text = execute(path, kernel, conf_file=None, overrides=pipeline_state)
    for expected in EXPECTED[path.stem]:
        assert expected in text, f"{path.name}: {expected!r} not in its output:\n{text}"
    assert "[figure]" in text, f"{path.name} showed no plot"
    assert not [m for m in MISSING if m in text], f"{path.name} missed its inputs:\n{text}"


@pytest.mark.slow
def test_notebooks_say_so_when_there_is_no_champion_or_run(tmp_path, kernel):
    empty = [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    assert "no 'champion' version" in execute(NOTEBOOKS[1], kernel, conf_file=None, overrides=empty)
    text = execute(NOTEBOOKS[2], kernel, conf_file=None, overrides=empty)
    assert "nothing has been trained yet" in text
