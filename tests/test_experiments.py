"""Experiments: reproducible fits, the papermill path equal to the package path, the champion chosen without the test split, evaluate and run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app
from ml_project.config import load_config
from ml_project.sections import SplitConfig
from ml_project.settings import get_settings
from ml_project.split import load_splits, split_data
from ml_project.train.experiment import run_experiment
from ml_project.train.notebooks import run_notebooks
from ml_project.train.training import train_model

runner = CliRunner()


@pytest.mark.parametrize("config_name", ["experiment_001.yaml", "churn_xgboost.yaml", "churn_mlp.yaml"])
def test_same_config_and_seed_give_identical_models(project, config_name):
    config = load_config(project.configs_dir / config_name)
    splits = load_splits(config, project)
    X_test, _ = splits["test"]
    first = train_model(*splits["train"], config, project).predict_proba(X_test)
    second = train_model(*splits["train"], config, project).predict_proba(X_test)
    # Equal to the last bits but for a random forest's parallel averaging, which sums trees in varying order (~1e-16).
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(first.argmax(axis=1), second.argmax(axis=1))
    reseeded = load_config(project.configs_dir / config_name, ["model.params.random_state=7"])
    other_seed = train_model(*splits["train"], reseeded, project).predict_proba(X_test)
    assert np.abs(first - other_seed).max() > 1e-6  # the seed is what makes them equal


def test_papermill_path_gives_the_package_paths_metrics(project, tmp_path):
    config_file = project.configs_dir / "experiment_001.yaml"
    config = load_config(config_file)
    outcome = run_notebooks(config_file, config, project)
    assert outcome.ok, outcome.message
    assert {p.name for p in outcome.folder.glob("*.ipynb")} == {"28_train.experiment.ipynb"}
    package = run_experiment(config, project, register=False)
    client = MlflowClient(project.mlflow_tracking_uri)
    notebook_run, package_run = client.get_run(outcome.run_id), client.get_run(package.run_id)
    assert notebook_run.info.status == "FINISHED"
    keys = [k for k in package_run.data.metrics if k.startswith(("cv_", "test_", "valid_"))]
    assert len(keys) > 15
    for key in keys:
        assert notebook_run.data.metrics[key] == pytest.approx(package_run.data.metrics[key], abs=1e-12), key
    # evaluated once: every metric was logged once, by the one evaluation path
    assert all(len(client.get_metric_history(outcome.run_id, k)) == 1 for k in keys)
    artefacts = {a.path for a in client.list_artifacts(outcome.run_id, "notebooks")}
    assert artefacts == {
        "notebooks/28_train.experiment.ipynb",
        "notebooks/28_train.experiment.html",
    }  # HTML: the artefact viewer renders it
    page = Path(client.download_artifacts(outcome.run_id, "notebooks/28_train.experiment.html", str(tmp_path)))
    assert (
        "roc_auc" in page.read_text() and "<img" in page.read_text()
    )  # the executed notebook, outputs and plots included
    assert any(a.path.endswith("roc_pr.png") for a in client.list_artifacts(outcome.run_id, "evaluation"))
    assert notebook_run.data.tags["model_version"] == "1" and notebook_run.data.tags["champion"] == "True"
    assert (
        "registered churn__fast v1 (champion); champion decision: the first version of churn__fast" in outcome.message
    )


def test_failing_notebook_cell_marks_the_run_failed(project):
    # a class weight keyed by the label passes the config check (a dict) and fails only when fitted: the model sees 0 and 1
    result = runner.invoke(
        app,
        ["run", "-c", str(project.configs_dir / "experiment_001.yaml"), "--set", "model.params.class_weight={Yes: 2}"],
    )
    assert result.exit_code == 1
    assert "28_train.experiment.ipynb: cell [" in result.output and "class_weight" in result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    run = MlflowClient(project.mlflow_tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED" and "class_weight" in run.data.tags["error"]
    assert (project.runs_dir / run_id / "28_train.experiment.ipynb").is_file()  # the executed notebook is kept


CONFIG = """
experiment: {{name: {name}, problem: hinted}}
data: {{source: {source}, target: y, positive_class: "yes", id_column: id}}
features: {{drop: [{drop}]}}
model: {{type: logistic_regression}}
training: {{cv_folds: {folds}, metrics: [auc]}}
"""


def _test_only_hint(project, tmp_path):
    "A table where `x` predicts the target everywhere and `hint` is the target on the test rows (a weak signal elsewhere); its configs."
    rng = np.random.default_rng(0)
    n = 1200  # under fast mode's sample size, so the split below is the one training makes
    frame = pd.DataFrame({"id": range(n), "x": rng.normal(size=n)})
    frame["y"] = np.where(frame["x"] + rng.normal(size=n) > 0, "yes", "no")
    truth = (frame["y"] == "yes").astype(int)
    frame["hint"] = np.where(rng.random(n) < 0.55, truth, 1 - truth)
    test_rows = split_data(frame, SplitConfig(), "y", seed=project.seed)["test"].index
    frame.loc[test_rows, "hint"] = truth[test_rows]
    source = write_csv(tmp_path / "hinted.csv", frame)

    def config(name, drop, folds):
        path = tmp_path / f"{name}.yaml"
        path.write_text(CONFIG.format(name=name, source=source, drop=drop, folds=folds))
        return load_config(path)

    return config


def test_the_champion_never_moves_on_a_test_metric(project, tmp_path):
    config = _test_only_hint(project, tmp_path)
    honest = run_experiment(config("honest", "hint", 2), project)  # learns from x
    # learns from the hint alone, and is cross-validated on other folds (3, not 2), so it is judged on the validation rows
    peeker = run_experiment(config("peeker", "x", 4), project)
    assert honest.champion and not peeker.champion
    assert peeker.test["roc_auc"] > 0.99 > honest.test["roc_auc"]  # far better on test ...
    assert peeker.valid["roc_auc"] < honest.valid["roc_auc"]  # ... worse on validation: it stays the challenger
    decision = peeker.promotion
    assert decision.compared_on == "validation" and decision.rows == honest.rows["valid"] == peeker.rows["valid"]
    assert decision.champion == pytest.approx(
        honest.valid["roc_auc"], abs=1e-12
    )  # the champion re-scored on the same rows
    client = MlflowClient(project.mlflow_tracking_uri)
    assert str(client.get_model_version_by_alias("hinted__fast", "champion").version) == honest.registered[1]
    assert str(client.get_model_version_by_alias("hinted__fast", "challenger").version) == peeker.registered[1]
    tag = client.get_model_version("hinted__fast", peeker.registered[1]).tags["promotion"]
    assert "does not beat champion v1" in tag and f"{peeker.rows['valid']} validation rows" in tag
    # the same folds: compared on CV means; a tie keeps the champion
    again = run_experiment(config("honest_again", "hint", 2), project)
    assert again.promotion.compared_on == "cv" and not again.champion and "does not beat" in again.promotion.reason


def test_only_the_champion_is_told_so_when_the_alias_moves(project, tmp_path):
    config = _test_only_hint(project, tmp_path)
    first = run_experiment(config("peeker", "x", 4), project)  # the first version: champion until a better one
    second = run_experiment(config("honest", "hint", 2), project)  # better on the validation rows: it takes over
    assert first.champion and second.champion
    client = MlflowClient(project.mlflow_tracking_uri)
    assert client.get_run(first.run_id).data.tags["champion"] == "False"  # the alias is the truth, and the tags say so
    assert client.get_run(second.run_id).data.tags["champion"] == "True"
    version = client.get_model_version("hinted__fast", second.registered[1])
    assert version.description == second.promotion.reason and "beats champion v1" in version.description
    assert f"Champion: v{second.registered[1]}" in client.get_registered_model("hinted__fast").description


def test_a_problem_has_one_selection_metric(project, tmp_path):
    base = (project.configs_dir / "churn_logistic.yaml").read_text()
    assert runner.invoke(app, ["train", "-c", str(project.configs_dir / "churn_logistic.yaml")]).exit_code == 0
    other = tmp_path / "other.yaml"
    other.write_text(base.replace("problem: churn", "problem: churn\n  selection_metric: log_loss"))
    result = runner.invoke(app, ["train", "-c", str(other)])
    assert result.exit_code == 1
    assert "problem 'churn__fast' chooses its champion on roc_auc" in result.output and "log_loss" in result.output


def test_train_registers_and_evaluate_reports(project):
    result = runner.invoke(
        app,
        [
            "train",
            "-c",
            str(project.configs_dir / "experiment_001.yaml"),
            "-c",
            str(project.configs_dir / "churn_logistic.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "champion is chosen on validation" in result.output and "champion decision:" in result.output
    client = MlflowClient(project.mlflow_tracking_uri)
    # v2 replaces v1 only if its CV ROC-AUC on the same folds is higher
    cv = {
        v: client.get_run(client.get_model_version("churn__fast", v).run_id).data.metrics["cv_auc_mean"]
        for v in ("1", "2")
    }
    champion = client.get_model_version_by_alias("churn__fast", "champion")
    assert str(champion.version) == ("2" if cv["2"] > cv["1"] else "1")
    assert client.get_model_version("churn__fast", "2").tags["compared_on"] == "cv"
    for model in ("churn__fast", str(project.models_dir / "experiment_001__fast")):
        result = runner.invoke(app, ["evaluate", "--model", model])
        assert result.exit_code == 0, result.output
        assert "roc_auc" in result.output and "confusion matrix at threshold" in result.output
        assert (
            f"{load_splits(load_config(project.configs_dir / 'experiment_001.yaml'), project).rows['test']:,} test rows"
            in result.output
        )
    written = {p.name for p in (project.models_dir / "experiment_001__fast" / "evaluation").iterdir()}
    assert {"report.md", "metrics.json", "roc_pr.png", "calibration.png", "confusion.png", "importance.png"} <= written


def test_evaluate_scores_the_recorded_split_and_writes_no_processed_data(project):
    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    trained = run_experiment(config, project)
    processed = project.processed_dir / "churn_xgboost__fast" / "test.parquet"
    before = processed.stat().st_mtime_ns
    # settings changed since training (another seed would split differently): the recorded rows are still used
    result = runner.invoke(app, ["evaluate", "--model", "churn__fast"], env={"ML_PROJECT_SEED": "7"})
    assert result.exit_code == 0, result.output
    shown = float(result.output.split("roc_auc")[1].split()[0])
    assert shown == pytest.approx(trained.test["roc_auc"], abs=5e-5)
    assert processed.stat().st_mtime_ns == before


def test_evaluate_refuses_a_model_outside_models(project, tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path)])
    assert result.exit_code == 1 and "models load only from" in result.output
    result = runner.invoke(app, ["evaluate", "--model", "nosuchproblem"])
    assert result.exit_code == 1 and "'nosuchproblem' has no registered versions" in result.output


def test_fast_mode_caps_the_networks_epochs(project):
    from ml_project.config import config_path
    from ml_project.train.training import fast_caps

    config = load_config(project.configs_dir / "churn_mlp.yaml")
    capped = fast_caps(config, project)
    assert capped.model.params["max_epochs"] == project.fast_max_epochs and config.model.params["max_epochs"] == 60
    assert config_path(capped) == config_path(config)  # the run still logs the config file
    assert fast_caps(config, get_settings(mode="careful")) is config
