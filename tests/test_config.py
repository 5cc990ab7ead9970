"""Config errors name the key and the file; settings follow the environment."""

import pytest

from ml_project.config import load_config
from ml_project.errors import ConfigError
from ml_project.settings import get_settings


def test_misspelt_key_is_named_with_suggestion(project, tmp_path):
    text = (project.configs_dir / "experiment_001.yaml").read_text().replace("cv_folds:", "cv_fold:")
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "unknown key 'training.cv_fold' (did you mean 'cv_folds'?)" in str(err.value)


def test_wrong_type_and_missing_section(project, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "experiment: {name: x}\ndata: {source: a.csv, target: y}\nmodel: {type: random_forest, params: 3}\n"
    )
    with pytest.raises(ConfigError, match="'model.params'"):
        load_config(path)
    path.write_text("experiment: {name: x}\nmodel: {type: random_forest}\n")
    with pytest.raises(ConfigError, match="missing key 'data'"):
        load_config(path)


def test_metric_must_fit_task(project, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "experiment: {name: x}\ndata: {source: a.csv, target: y, task: regression}\n"
        "model: {type: ridge}\ntraining: {metrics: [auc]}\n"
    )
    with pytest.raises(ConfigError, match="do not apply to regression"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="Config file not found: nowhere.yaml"):
        load_config("nowhere.yaml")


def test_environment_overrides_settings(project, monkeypatch):
    assert project.mode == "fast"  # the fixture's ML_PROJECT_MODE
    monkeypatch.setenv("ML_PROJECT_MODE", "careful")
    assert get_settings().mode == "careful"
    monkeypatch.setenv("ML_PROJECT_FAST_CV_FOLDS", "two")
    with pytest.raises(ConfigError, match="ML_PROJECT_FAST_CV_FOLDS"):
        get_settings()


def test_override_values_are_typed(project):
    config = load_config(
        project.configs_dir / "experiment_001.yaml", ["model.params.max_depth=3", "training.cv_folds=4"]
    )
    assert config.model.params["max_depth"] == 3 and config.training.cv_folds == 4
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(project.configs_dir / "experiment_001.yaml", ["modle.type=ridge"])
