"""The MLflow UI as this project's users see it: the run page of a trained model, served from the project's own store on
a free localhost port, read in headless Chromium."""

import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import chromium_browser, free_port
from mlflow.tracking import MlflowClient

BIN = Path(sys.executable).parent
SHOTS = Path(__file__).resolve().parent.parent / ".test-runs" / "screenshots"


def _text_when(browser, needles: list[str], timeout: float = 60) -> str:
    "The page's text once every needle is in it (the UI renders after its API calls return), else what it showed."
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        text = browser.execute_script("return document.body.innerText")
        if all(n in text for n in needles):
            break
        time.sleep(0.5)
    return text


def test_the_run_page_shows_the_kind_the_dataset_the_metrics_and_the_plots(trained_churn):
    settings = trained_churn
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("churn")
    assert (
        experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    )  # the model-training view, not GenAI traces
    run = client.search_runs([experiment.experiment_id])[0]
    assert run.info.run_name == "churn_xgboost__fast"  # fast runs are told apart from careful ones by name
    assert [(d.dataset.name, [t.value for t in d.tags]) for d in run.inputs.dataset_inputs] == [
        ("wa_churn", ["training"])
    ]
    port = free_port()
    log = open(settings.root / "mlflow-ui.log", "w")
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "ui",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=settings.root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (settings.root / "mlflow-ui.log").read_text()[-3000:]
            time.sleep(0.5)
        browser = chromium_browser(1400, 1200)
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.get(f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")
        text = _text_when(browser, ["churn_xgboost__fast", "valid_roc_auc", "wa_churn"])
        browser.save_screenshot(str(SHOTS / "mlflow-run.png"))
        assert "churn_xgboost__fast" in text and "valid_roc_auc" in text and "wa_churn" in text, text[:3000]
        browser.get(
            f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}/artifacts/evaluation/roc_pr.png"
        )
        _text_when(browser, ["roc_pr.png"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not browser.execute_script(
            "return [...document.images].some(i => i.complete && i.naturalWidth > 400)"
        ):
            time.sleep(0.5)
        browser.save_screenshot(str(SHOTS / "mlflow-artifact.png"))
        assert browser.execute_script("return [...document.images].some(i => i.complete && i.naturalWidth > 400)"), (
            browser.execute_script(
                "return [...document.images].map(i => [i.src.slice(0, 80), i.naturalWidth, i.complete])"
            )
        )
        # MLflow 3.17 opens in its GenAI view unless told otherwise: the links the project prints ask for model training
        browser.get(f"{base}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
        text = _text_when(browser, ["churn_xgboost__fast"])
        browser.save_screenshot(str(SHOTS / "mlflow-experiment.png"))
        assert "churn_xgboost__fast" in text, text[:3000]
    finally:
        if browser:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)
        log.close()
