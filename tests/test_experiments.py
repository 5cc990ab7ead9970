"""Experiments: reproducible fits, the papermill path equal to the package path, the registry's champion rule, evaluate and run."""
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app
from ml_project.config import get_settings, load_config
from ml_project.experiments import run_notebooks
from ml_project.features import features_and_target
from ml_project.training import prepare_data, promote_if_better, run_experiment, train_model, use_mlflow

runner = CliRunner()


@pytest.mark.parametrize("config_name", ["experiment_001.yaml", "churn_xgboost.yaml", "churn_mlp.yaml"])
def test_same_config_and_seed_give_identical_models(project, config_name):
    config = load_config(project.configs_dir / config_name)
    _, splits, _ = prepare_data(config, project)
    X, y = features_and_target(splits["train"], config)
    X_test, _ = features_and_target(splits["test"], config)
    first = train_model(X, y, config, project).predict_proba(X_test)
    second = train_model(X, y, config, project).predict_proba(X_test)
    # Equal to the last bits but for a random forest's parallel averaging, which sums trees in varying order (~1e-16).
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(first.argmax(axis=1), second.argmax(axis=1))
    reseeded = load_config(project.configs_dir / config_name, ["model.params.random_state=7"])
    other_seed = train_model(X, y, reseeded, project).predict_proba(X_test)
    assert np.abs(first - other_seed).max() > 1e-6  # the seed is what makes them equal


def test_papermill_path_gives_the_package_paths_metrics(project):
    config_file = project.configs_dir / "experiment_001.yaml"
    config = load_config(config_file)
    outcome = run_notebooks(config_file, config, project)
    assert outcome.ok, outcome.message
    assert {p.name for p in outcome.folder.glob("*.ipynb")} == {"06_training.ipynb", "07_evaluation.ipynb"}
    package = run_experiment(config, project, register=False)
    client = MlflowClient(project.mlflow_tracking_uri)
    notebook_run, package_run = client.get_run(outcome.run_id), client.get_run(package.run_id)
    assert notebook_run.info.status == "FINISHED"
    keys = [k for k in package_run.data.metrics if k.startswith(("cv_", "test_", "valid_"))]
    assert len(keys) > 15
    for key in keys:
        assert notebook_run.data.metrics[key] == pytest.approx(package_run.data.metrics[key], abs=1e-12), key
    artefacts = {a.path for a in client.list_artifacts(outcome.run_id, "notebooks")}
    assert artefacts == {"notebooks/06_training.ipynb", "notebooks/07_evaluation.ipynb"}
    assert any(a.path.endswith("roc_pr.png") for a in client.list_artifacts(outcome.run_id, "evaluation"))


def test_failing_notebook_cell_marks_the_run_failed(project):
    result = runner.invoke(app, ["run", "-c", str(project.configs_dir / "experiment_001.yaml"), "--set", "model.params.max_depth=-3"])
    assert result.exit_code == 1
    assert "06_training.ipynb: cell [" in result.output and "max_depth" in result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    run = MlflowClient(project.mlflow_tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED" and "max_depth" in run.data.tags["error"]
    assert (project.runs_dir / run_id / "06_training.ipynb").is_file()  # the executed notebook is kept


def test_champion_moves_only_for_a_better_model(project):
    mlflow = use_mlflow(project, "toy")
    client = MlflowClient(project.mlflow_tracking_uri)
    client.create_registered_model("toy")
    def version(rmse):
        with mlflow.start_run() as run: mlflow.log_metric("test_rmse", rmse)
        return client.create_model_version("toy", f"runs:/{run.info.run_id}/model", run.info.run_id).version
    assert promote_if_better("toy", version(2.0), "rmse", project)  # no champion yet
    assert not promote_if_better("toy", version(2.5), "rmse", project)  # worse: lower is better for rmse
    assert not promote_if_better("toy", version(2.0), "rmse", project)  # a tie keeps the champion
    assert promote_if_better("toy", version(1.5), "rmse", project)
    assert str(client.get_model_version_by_alias("toy", "champion").version) == "4"


def test_train_registers_and_evaluate_reports(project):
    result = runner.invoke(app, ["train", "-c", str(project.configs_dir / "experiment_001.yaml"),
                                 "-c", str(project.configs_dir / "churn_logistic.yaml")])
    assert result.exit_code == 0, result.output
    assert "Summary (primary metric of each experiment)" in result.output
    client = MlflowClient(project.mlflow_tracking_uri)
    # v1 (the RF) became champion as the first; v2 (logistic, primary metric auc) replaces it only if its test AUC is higher.
    auc = {v: client.get_run(client.get_model_version("churn__fast", v).run_id).data.metrics["test_auc"] for v in ("1", "2")}
    champion = client.get_model_version_by_alias("churn__fast", "champion")
    assert str(champion.version) == ("2" if auc["2"] > auc["1"] else "1")
    assert client.get_run(champion.run_id).data.tags["champion"] == "True"
    result = runner.invoke(app, ["evaluate", "--model", str(project.models_dir / "experiment_001__fast")])
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "confusion matrix at threshold" in result.output
    written = {p.name for p in (project.models_dir / "experiment_001__fast" / "evaluation").iterdir()}
    assert {"report.md", "metrics.json", "roc_pr.png", "calibration.png", "confusion.png", "importance.png"} <= written


def test_evaluate_refuses_a_model_outside_models(project, tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path)])
    assert result.exit_code == 1 and "models load only from" in result.output


def test_fast_mode_caps_the_networks_epochs(project):
    from ml_project.config import config_path
    from ml_project.training import fast_caps
    config = load_config(project.configs_dir / "churn_mlp.yaml")
    capped = fast_caps(config, project)
    assert capped.model.params["max_epochs"] == project.fast_max_epochs and config.model.params["max_epochs"] == 60
    assert config_path(capped) == config_path(config)  # the run still logs the config file
    assert fast_caps(config, get_settings(mode="careful")) is config
