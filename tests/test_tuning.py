"""Tuning: search spaces from config, direction from the metric, a study that resumes."""
import optuna
import pytest

from ml_project.config import ConfigError, load_config
from ml_project.tuning import open_study, tune


def test_regression_study_minimises_and_resumes(project, tmp_path):
    config = load_config(project.configs_dir / "ames_xgboost.yaml", ["model.params.n_estimators=200"])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune(config, project, n_trials=2, storage=storage)
    assert first.direction == optuna.study.StudyDirection.MINIMIZE  # rmsle: lower is better
    assert all(0 < t.value < 1 for t in first.trials if t.state == optuna.trial.TrialState.COMPLETE)
    again = tune(config, project, n_trials=1, storage=storage)
    assert len(again.trials) == 3 and again.study_name == "ames_xgboost__fast"
    assert set(again.best_params) == set(config.tuning.search_space)


def test_search_space_errors_name_the_key(project, tmp_path):
    path = tmp_path / "bad.yaml"
    text = (project.configs_dir / "churn_xgboost.yaml").read_text()
    path.write_text(text.replace("max_depth: {type: int, low: 4, high: 20}", "max_depth: {type: int, low: 20, high: 4}"))
    with pytest.raises(ConfigError, match="tuning.search_space.max_depth"):
        load_config(path)
    path.write_text(text.replace("sampler: tpe", "sampler: cmaes"))
    with pytest.raises(ConfigError, match="tuning.sampler"):
        load_config(path)


def test_sampler_is_seeded(project, tmp_path):
    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    draws = []
    for name in ("a", "b"):
        study = open_study(config, project, f"sqlite:///{tmp_path / name}.db")
        draws.append(study.ask().suggest_float("x", 0, 1))
    assert draws[0] == draws[1]
