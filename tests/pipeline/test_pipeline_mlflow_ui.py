"""The MLflow UI over the store a nightly run wrote, checked in a real browser.

`mlflow ui` (as `make mlflow-ui` starts it) serves the tiny nightly world's store (or
the folder $DUIA_UI_STORE names, holding an `mlflow.db`: `make demo`'s `.duia/demo`) on
127.0.0.1; Debian's headless Chromium (`make browser-setup`) drives it through selenium.
MLflow's REST API only finds ids and file names: every check reads the rendered page.
Screenshots go to $DUIA_UI_SCREENSHOTS when set, else to the test's temp folder. The
documentation's come from the demo's store:
    make demo && DUIA_UI_STORE=.duia/demo DUIA_UI_SCREENSHOTS=docs/screenshots make test-browser
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
EXPERIMENT = MODEL = "duia-ranker"  # mlflow.experiment, mlflow.registered_model
PAGE_WAIT_S = 60  # a React page on 2 busy cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowUi:
    """The server's base URL, its REST API (ids and paths only) and a browser on it."""

    def __init__(self, base: str, driver, shots: Path):
        self.base, self.driver, self.shots = base, driver, shots

    def rest(self, endpoint: str, **query) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict]:
        body = json.dumps({"experiment_ids": [experiment_id], "filter": filter_string}).encode()
        req = urllib.request.Request(
            f"{self.base}/api/2.0/mlflow/runs/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read()).get("runs", [])

    def open(self, route: str) -> None:
        self.driver.get(f"{self.base}/#/{route}")

    def page_text(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_for_text(self, *needles: str) -> str:
        """The page's text once every needle shows (fails naming those still missing)."""
        deadline = time.monotonic() + PAGE_WAIT_S
        while True:
            text = self.page_text()
            missing = [n for n in needles if n not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"{self.driver.current_url}: never showed {missing}")
            time.sleep(0.5)

    def click_text(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        xpath = f"//*[normalize-space(text())='{text}']"
        WebDriverWait(self.driver, PAGE_WAIT_S).until(
            ec.element_to_be_clickable((By.XPATH, xpath))
        ).click()

    def scroll_to_text(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        el = self.driver.find_element(By.XPATH, f"//*[normalize-space(text())='{text}']")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)

    def screenshot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / name))


@pytest.fixture(scope="module")
def ui_store(request) -> Path:
    """The folder whose mlflow.db the UI serves: $DUIA_UI_STORE, else the nightly world's."""
    store = os.environ.get("DUIA_UI_STORE")
    return Path(store).resolve() if store else request.getfixturevalue("nightly_world").state


@pytest.fixture(scope="module")
def mlflow_server(ui_store, tmp_path_factory):
    log_file = tmp_path_factory.mktemp("mlflow_ui") / "mlflow-ui.log"
    port = _free_port()
    argv = [
        str(Path(sys.executable).parent / "mlflow"),
        "ui",
        "--backend-store-uri",
        f"sqlite:///{ui_store / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # The UI needs no background job runner (its worker pool is a dozen processes).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_file.open("w") as log:
        server = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not come up:\n{log_file.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # uvicorn and its workers: the session we started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ui(mlflow_server, tmp_path_factory):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: the MLflow UI test needs Debian's chromium and "
            "chromium-driver; run `make browser-setup`",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium_profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,860",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    shots = Path(os.environ.get("DUIA_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        # Screenshots show the model-training view, without the assistant's side panel.
        driver.get(mlflow_server)
        driver.execute_script(
            "localStorage.setItem('mlflow.workflowType_v1', '\"machine_learning\"');"
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
        )
        yield MlflowUi(mlflow_server, driver, shots)
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def experiment_id(ui) -> str:
    return ui.rest("experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"][
        "experiment_id"
    ]


@pytest.fixture(scope="module")
def last_night(ui, experiment_id) -> str:
    """The newest night (data_date) the store's training runs cover."""
    runs = ui.search_runs(experiment_id, "tags.kind = 'training'")
    dates = [t["value"] for r in runs for t in r["data"]["tags"] if t["key"] == "data_date"]
    assert dates, "the store holds no training run"
    return max(dates)


@pytest.fixture(scope="module")
def last_night_run(ui, experiment_id, last_night) -> dict:
    """The last night's PLE+DUIA training run."""
    runs = ui.search_runs(
        experiment_id, f"tags.data_date = '{last_night}' and tags.variant = 'ple+duia'"
    )
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_the_experiment_lists_every_run_the_nights_logged(ui, experiment_id, last_night):
    names = [r["info"]["run_name"] for r in ui.search_runs(experiment_id)]
    assert f"{last_night}-ple+duia" in names and f"{last_night}-ple" in names
    ui.open(f"experiments/{experiment_id}/runs")
    text = ui.wait_for_text(*names)
    assert f"{len(names)} matching runs" in text
    ui.screenshot("experiment_runs.png")


@pytest.mark.slow
def test_the_run_page_shows_every_task_by_segment_metric(
    ui, experiment_id, last_night, last_night_run
):
    params = {p["key"]: p["value"] for p in last_night_run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in last_night_run["data"]["metrics"]}
    tasks = json.loads(params["model.tasks"])
    segments = [s for s in ("all", "low", "mid", "high") if metrics.get(f"n.{s}", 0) > 0]
    assert tasks and "all" in segments
    expected = [f"{m}.{t}.{s}" for m in ("auc", "gauc") for t in tasks for s in segments]
    ui.open(f"experiments/{experiment_id}/runs/{last_night_run['info']['run_id']}")
    ui.wait_for_text(f"{last_night}-ple+duia", "Metrics", *expected)
    ui.scroll_to_text(expected[0])
    ui.screenshot("run_metrics.png")


@pytest.mark.slow
def test_the_run_plots_render_as_images(ui, experiment_id, last_night_run):
    run_id = last_night_run["info"]["run_id"]
    files = ui.rest("artifacts/list", run_id=run_id, path="plots").get("files", [])
    plots = [f["path"] for f in files if f["path"].endswith(".png")]
    assert "plots/training_curves.png" in plots and "plots/segment_auc.png" in plots
    ui.open(f"experiments/{experiment_id}/runs/{run_id}/artifacts")
    ui.click_text("plots")
    seen: set[str] = set()
    for plot in plots:
        ui.click_text(plot.removeprefix("plots/"))  # the file in the artifact tree
        ui.wait_for_text(plot)  # the preview's title
        # A new blob image, decoded: a broken or still-loading <img> has naturalWidth 0.
        deadline = time.monotonic() + PAGE_WAIT_S
        while True:
            loaded = ui.driver.execute_script(
                "return Array.from(document.images).filter(i => i.src.startsWith('blob:')"
                " && i.complete && i.naturalWidth > 0).map(i => [i.src, i.naturalWidth])"
            )
            fresh = [(src, w) for src, w in loaded if src not in seen]
            if fresh:
                seen.update(src for src, _ in fresh)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{plot}: no image rendered on {ui.driver.current_url}")
            time.sleep(0.5)
        if plot == "plots/segment_auc.png":
            ui.screenshot("run_plot.png")


@pytest.mark.slow
def test_the_registry_shows_the_champion_alias(ui):
    champion = ui.rest("registered-models/alias", name=MODEL, alias="champion")["model_version"]
    ui.open(f"models/{MODEL}")
    ui.wait_for_text(MODEL, f"Version {champion['version']}", "@ champion")
    ui.screenshot("registry.png")
    ui.open(f"models/{MODEL}/versions/{champion['version']}")
    text = ui.wait_for_text(f"Version {champion['version']}", "Aliases")
    aliases_line = text[text.index("Aliases") :].splitlines()[:3]
    assert any("champion" in line for line in aliases_line), aliases_line


@pytest.mark.slow
def test_the_champion_version_holds_its_cluster_memory_and_config(ui, experiment_id):
    champion = ui.rest("registered-models/alias", name=MODEL, alias="champion")["model_version"]
    model_id = champion["source"].removeprefix("models:/")  # the version's logged model
    ui.open(f"experiments/{experiment_id}/models/{model_id}/artifacts")
    ui.wait_for_text("MLmodel")
    ui.click_text("artifacts")  # the pyfunc's own artifacts folder
    ui.wait_for_text("cluster_memory.safetensors", "model_config.json")
    ui.click_text("model_config.json")
    ui.wait_for_text('"variant"', '"tasks"')  # the ModelConfig, previewed as text
    ui.screenshot("model_artifacts.png")
