"""A search across model families from the command line: every family tried, the winner refitted and registered; the
configs it cannot run refused with the key at fault."""
import re

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app

runner = CliRunner()
SEARCH = "configs/churn_search.yaml"


def _tune(project, *args):
    return runner.invoke(app, ["tune", "-c", str(project.root / SEARCH), *args])


def test_search_tries_every_family_and_registers_the_winner(project):
    storage = f"sqlite:///{project.root / 'search.db'}"
    result = _tune(project, "--trials", "6", "--storage", storage)
    assert result.exit_code == 0, result.output
    table = result.output.split("this run added 6")[1]
    for family in ("churn_logistic", "experiment_001", "churn_xgboost", "churn_mlp"):
        assert re.search(rf"^{family}\s+\d", table, re.M), f"{family} missing from the family table:\n{result.output}"
    best = re.search(r"best CV auc ([0-9.]+) \(trial (\d+)\): (\w+) ", result.output)
    assert best, result.output
    version = re.search(r"registered (\S+) v(\d+)", result.output)
    client = MlflowClient(project.mlflow_tracking_uri)
    run = client.get_run(client.get_model_version(version.group(1), version.group(2)).run_id)
    expected = {"churn_logistic": "logistic_regression", "experiment_001": "random_forest", "churn_xgboost": "xgboost", "churn_mlp": "mlp"}
    assert run.data.params["model.type"] == expected[best.group(3)]  # the refit trained the winning family
    assert run.data.tags["tuned_by"] == f"churn_search__fast trial {best.group(2)}"

    # The same study again with fewer families: refused before any trial, with what to do.
    text = (project.root / SEARCH).read_text().replace("    - churn_mlp.yaml\n", "")
    (project.root / "configs" / "three.yaml").write_text(text)
    again = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "three.yaml"), "--trials", "1", "--storage", storage])
    assert again.exit_code == 1 and "new experiment.name" in again.output, again.output


def test_search_configs_are_checked_and_train_refuses_them(project):
    trained = runner.invoke(app, ["train", "-c", str(project.root / SEARCH)])
    assert trained.exit_code == 1 and "run it with ml-project tune" in trained.output, trained.output
    text = (project.root / SEARCH).read_text()
    (project.root / "configs" / "missing.yaml").write_text(text.replace("churn_mlp.yaml", "churn_nn.yaml"))
    missing = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "missing.yaml"), "--trials", "1"])
    assert missing.exit_code == 1 and "tuning.families" in missing.output and "churn_nn.yaml" in missing.output, missing.output
    (project.root / "configs" / "both.yaml").write_text(text + "  search_space:\n    C: {type: float, low: 0.1, high: 1}\n")
    both = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "both.yaml"), "--trials", "1"])
    assert both.exit_code == 1 and "remove search_space, or families" in both.output, both.output
    (project.root / "configs" / "bad_space.yaml").write_text(
        (project.root / "configs" / "churn_logistic.yaml").read_text().replace("low: 0.001, high: 100", "low: -1, high: 100"))
    (project.root / "configs" / "bad_family.yaml").write_text(text.replace("churn_logistic.yaml", "bad_space.yaml"))
    bad = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "bad_family.yaml"), "--trials", "1"])
    assert bad.exit_code == 1 and "tuning.families churn_logistic: tuning.search_space.C" in bad.output, bad.output
