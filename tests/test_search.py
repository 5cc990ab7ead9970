"""A search across model families from the command line: every family tried, the winner refitted and registered; the
configs it cannot run refused with the key at fault."""

import json
import re
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app
from ml_project.config import load_config

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
        assert re.search(rf"^{family}\s+\d", table, re.MULTILINE), (
            f"{family} missing from the family table:\n{result.output}"
        )
    best = re.search(r"best CV auc ([0-9.]+) \(trial (\d+)\): (\w+) ", result.output)
    assert best, result.output
    version = re.search(r"registered (\S+) v(\d+)", result.output)
    client = MlflowClient(project.mlflow_tracking_uri)
    run = client.get_run(client.get_model_version(version.group(1), version.group(2)).run_id)
    # The shipped search blends the families' leaders (tuning.ensemble): on these six trials the blend beats the winner.
    blend = re.search(r"^ensemble: (.+) \(weights from", result.output, re.MULTILINE)
    assert blend, result.output
    weights = {name: float(w) for name, w in re.findall(r"(\w+) x([0-9.]+)", blend.group(1))}
    assert len(weights) >= 2 and set(weights) <= {"churn_logistic", "experiment_001", "churn_xgboost", "churn_mlp"}
    assert run.data.params["model.type"] == "ensemble"
    parent = re.search(r"MLflow parent run (\w+)", result.output).group(1)
    report = json.loads(
        Path(client.download_artifacts(parent, "ensemble.json", str(project.root))).read_text()
    )  # leaders, weights, the blend's CV
    assert {name: f["weight"] for name, f in report["families"].items() if f["weight"]} == weights
    assert report["cv"] > max(f["cv"] for f in report["families"].values()) - 0.01  # pooled folds, not the folds' mean
    leaders = sorted(str(f["trial"]) for f in report["families"].values() if f["weight"])
    assert sorted(run.data.tags["tuned_by"].removeprefix("churn_search__fast trials ").split(", ")) == leaders

    # The registered blend averages its members' probabilities with those weights.
    from ml_project.search.tune import tuned_dir
    from ml_project.split import load_splits
    from ml_project.train.files import load_model

    search = load_config(project.root / SEARCH)
    model, _ = load_model(tuned_dir(search, project), project)
    X = load_splits(search, project)["test"][0].head(50)
    vote = model[-1]
    members = {
        name: member.predict_proba(X)[:, 1] for name, member in zip([n for n, _ in vote.estimators], vote.estimators_)
    }
    expected = sum(weights[name] * p for name, p in members.items()) / sum(weights.values())
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], expected, rtol=1e-6)

    # The same study again with fewer families: refused before any trial, with what to do.
    text = (project.root / SEARCH).read_text().replace("    - churn_mlp.yaml\n", "")
    (project.root / "configs" / "three.yaml").write_text(text)
    again = runner.invoke(
        app, ["tune", "-c", str(project.root / "configs" / "three.yaml"), "--trials", "1", "--storage", storage]
    )
    assert again.exit_code == 1 and "new experiment.name" in again.output, again.output


def test_search_configs_are_checked_and_train_refuses_them(project):
    trained = runner.invoke(app, ["train", "-c", str(project.root / SEARCH)])
    assert trained.exit_code == 1 and "run it with ml-project tune" in trained.output, trained.output
    text = (project.root / SEARCH).read_text()
    (project.root / "configs" / "missing.yaml").write_text(text.replace("churn_mlp.yaml", "churn_nn.yaml"))
    missing = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "missing.yaml"), "--trials", "1"])
    assert missing.exit_code == 1 and "tuning.families" in missing.output and "churn_nn.yaml" in missing.output, (
        missing.output
    )
    (project.root / "configs" / "both.yaml").write_text(
        text + "  search_space:\n    C: {type: float, low: 0.1, high: 1}\n"
    )
    both = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "both.yaml"), "--trials", "1"])
    assert both.exit_code == 1 and "remove search_space, or families" in both.output, both.output
    (project.root / "configs" / "bad_space.yaml").write_text(
        (project.root / "configs" / "churn_logistic.yaml")
        .read_text()
        .replace("low: 0.001, high: 100", "low: -1, high: 100")
    )
    (project.root / "configs" / "bad_family.yaml").write_text(text.replace("churn_logistic.yaml", "bad_space.yaml"))
    bad = runner.invoke(app, ["tune", "-c", str(project.root / "configs" / "bad_family.yaml"), "--trials", "1"])
    assert bad.exit_code == 1 and "tuning.families churn_logistic: tuning.search_space.C" in bad.output, bad.output
