"""Monitoring: `ml-project monitor` on the service's prediction log and on a scored file, quiet on unshifted rows and
alerting (exit 4) on shifted rows and flipped labels."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import chromium_browser
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ml_project.cli import app as cli
from ml_project.config import load_config
from ml_project.serve.app import create_app
from ml_project.serve.log import PredictionLog
from ml_project.split import load_splits

runner = CliRunner()


@pytest.fixture
def churn(trained_churn):
    "The churn__fast champion, trained with its monitoring reference, and held-out rows as a client would send them."
    project = trained_churn
    splits = load_splits(load_config(project.configs_dir / "churn_xgboost.yaml"), project)
    rows = pd.concat([splits.X["valid"], splits.X["test"]])
    labels = np.asarray(splits.classes, dtype=object)[pd.concat([splits.y["valid"], splits.y["test"]]).to_numpy()]
    return project, rows, labels


def _send(settings, rows: pd.DataFrame) -> list[str]:
    "Predict `rows` through the service, one request each; return the request ids."
    log = PredictionLog(settings.prediction_log_dir, flush_ms=50)
    client = TestClient(create_app("churn__fast", settings, keys=[], prediction_log=log))
    records = json.loads(rows.to_json(orient="records"))
    ids = [client.post("/predict", json=r).headers["X-Request-ID"] for r in records]
    log.close()
    return ids


def test_monitor_is_quiet_on_the_data_it_knows_and_alerts_on_a_shift(churn, tmp_path):
    settings, rows, labels = churn
    ids = _send(settings, rows)
    quiet = runner.invoke(cli, ["monitor", "--model", "churn__fast", "--out", str(tmp_path / "quiet")])
    assert quiet.exit_code == 0, quiet.output
    summary = json.loads((tmp_path / "quiet" / "summary.json").read_text())
    assert summary["rows"] == len(rows) and summary["alerts"] == [] and not summary["dataset_drift"]["drifted"]
    assert (
        summary["health"]["requests"] == len(rows)
        and summary["health"]["refused_share"] == 0
        and summary["health"]["latency_p99_ms"] > 0
    )

    rng = np.random.default_rng(0)
    shifted = rows.assign(
        monthly_charges=rows["monthly_charges"] * 1.3,
        contract=rows["contract"].astype(object).where(rng.random(len(rows)) > 0.5, "Month-to-month"),
    )
    new_ids = _send(settings, shifted)
    flipped = np.where(rng.random(len(labels)) < 0.25, np.where(labels == "Yes", "No", "Yes"), labels)
    pd.DataFrame({"request_id": new_ids, "churn": flipped}).to_csv(tmp_path / "labels.csv", index=False)
    loud = runner.invoke(
        cli,
        [
            "monitor",
            "--model",
            "churn__fast",
            "--last",
            str(len(rows)),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "loud"),
        ],
    )
    assert loud.exit_code == 4, loud.output
    assert (
        "alert: input drift" in loud.output
        and "monthly_charges" in loud.output
        and "performance decay: roc_auc" in loud.output
    )
    summary = json.loads((tmp_path / "loud" / "summary.json").read_text())
    assert summary["performance"]["rows"] == len(rows) and summary["performance"]["decayed"]
    runs = mlflow.search_runs(experiment_names=["churn"], filter_string="tags.monitoring = 'true'")
    assert (
        len(runs) == 2
        and min(runs["metrics.alerts"].tolist()) == 0
        and runs["metrics.current_roc_auc"].notna().sum() == 1
    )
    assert len(ids) == len(rows)
    _check_in_chromium(tmp_path / "loud" / "report.html")


def test_refused_requests_count_in_the_health_and_alert_past_their_share(churn, tmp_path):
    settings, rows, _ = churn
    _send(settings, rows.head(150))
    _send(
        settings, rows.head(20).assign(contract="Lifetime")
    )  # a client sending a contract the model never saw: 422 each
    done = runner.invoke(cli, ["monitor", "--model", "churn__fast", "--out", str(tmp_path / "r")])
    assert done.exit_code == 4, done.output
    assert "alert: service health: 11.8% of 170 requests refused (most often: Input should be" in done.output, (
        done.output
    )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["rows"] == 150 and summary["health"]["statuses"] == {"200": 150, "422": 20}
    assert "Service health (from the log)" in (tmp_path / "r" / "report.html").read_text()


def test_retrain_on_drift_adds_the_labelled_rows_and_lets_the_champion_rule_decide(churn, tmp_path):
    import hashlib

    settings, rows, labels = churn
    raw = settings.raw_dir / "wa_churn.csv"
    before = hashlib.md5(raw.read_bytes()).hexdigest()
    quiet_ids = _send(settings, rows.head(300))
    calm = runner.invoke(cli, ["monitor", "--model", "churn__fast", "--retrain", "--out", str(tmp_path / "calm")])
    assert calm.exit_code == 0 and "no drift or decay alert, nothing to retrain" in calm.output, calm.output
    shifted = rows.head(300).assign(monthly_charges=rows["monthly_charges"].head(300) * 1.3)
    ids = _send(settings, shifted)
    pd.DataFrame({"request_id": ids, "churn": labels[:300]}).to_csv(tmp_path / "labels.csv", index=False)
    done = runner.invoke(
        cli,
        [
            "monitor",
            "--model",
            "churn__fast",
            "--last",
            "300",
            "--labels",
            str(tmp_path / "labels.csv"),
            "--retrain",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert done.exit_code == 4, done.output  # the alert still fired: retraining is an answer to it, not its silence
    assert "retrain: input drift: monthly_charges" in done.output and "(300 labelled new rows added)" in done.output, (
        done.output
    )
    retrained = json.loads((tmp_path / "r" / "summary.json").read_text())["retrain"]
    assert retrained["experiment"] == "churn_xgboost-retrained" and retrained["version"] == "2"
    assert len(pd.read_csv(settings.root / retrained["data"])) == 7043 + 300
    version = mlflow.MlflowClient().get_model_version("churn__fast", "2")
    assert (
        version.tags["promotion"]
        and ("promoted" in version.tags)
        and retrained["promoted"] == (version.tags["promoted"] == "true")
    )
    assert hashlib.md5(raw.read_bytes()).hexdigest() == before and len(quiet_ids) == 300  # the raw data is untouched


def _check_in_chromium(page):
    "The report as a person sees it: its alerts listed and every plot drawn; a screenshot for the eye."
    from pathlib import Path

    from selenium.webdriver.common.by import By

    browser = chromium_browser(1300, 2400)
    try:
        browser.get(page.as_uri())
        alerts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "ul.alert li")]
        assert any(a.startswith("input drift") for a in alerts) and any(
            a.startswith("performance decay") for a in alerts
        ), alerts
        images = browser.find_elements(By.TAG_NAME, "img")
        assert len(images) >= 2 and all(
            browser.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images
        )
        shots = Path(__file__).resolve().parent.parent / ".test-runs" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shots / "monitoring-report.png"))
    finally:
        browser.quit()


def test_monitor_reads_a_scored_file_and_names_what_is_wrong(churn, tmp_path):
    _settings, rows, _ = churn
    rows.to_csv(tmp_path / "new.csv", index=False)
    assert (
        runner.invoke(
            cli,
            [
                "predict",
                "--model",
                "churn__fast",
                "--input",
                str(tmp_path / "new.csv"),
                "--output",
                str(tmp_path / "scored.parquet"),
            ],
        ).exit_code
        == 0
    )
    done = runner.invoke(
        cli,
        [
            "monitor",
            "--model",
            "churn__fast",
            "--input",
            str(tmp_path / "scored.parquet"),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert done.exit_code == 0, done.output
    missing = runner.invoke(cli, ["monitor", "--model", "churn__fast"])  # nothing was served
    assert missing.exit_code == 1 and "serve the model" in missing.output
    pd.read_parquet(tmp_path / "scored.parquet").drop(columns=["tenure"]).to_parquet(tmp_path / "cut.parquet")
    cut = runner.invoke(cli, ["monitor", "--model", "churn__fast", "--input", str(tmp_path / "cut.parquet")])
    assert cut.exit_code == 1 and "tenure" in cut.output


def test_thresholds_are_checked_with_the_config(project, tmp_path):
    from ml_project.errors import ConfigError

    text = (project.configs_dir / "churn_xgboost.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(text + "\nmonitoring:\n  drift_share: 2\n  distanse: 0.2\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "bad.yaml")
    assert "monitoring.drift_share" in str(error.value) and "monitoring.distanse" in str(error.value)
    (tmp_path / "good.yaml").write_text(text + "\nmonitoring:\n  drift_share: 0.3\n  max_drop: 0.05\n")
    assert load_config(tmp_path / "good.yaml").monitoring.drift_share == 0.3


def test_a_champion_that_has_served_nothing_yet_is_not_an_error(churn, monkeypatch):
    from ml_project.errors import NothingToMonitor
    from ml_project.monitor import check
    from ml_project.monitor.report import logged_rows

    settings, rows, _ = churn
    _send(settings, rows.head(5))  # served by v1
    with pytest.raises(NothingToMonitor, match=r"nothing to monitor for churn__fast v7 yet: .* rows of v1 only"):
        logged_rows(settings, "churn__fast", "7")  # the champion has moved to v7, which has answered nothing

    def moved(*args, **kwargs):
        return logged_rows(settings, "churn__fast", "7")

    monkeypatch.setattr(check, "monitor_model", moved)
    done = runner.invoke(cli, ["monitor", "--model", "churn__fast"])
    assert done.exit_code == 0 and "nothing to monitor for churn__fast v7 yet" in done.output, done.output
