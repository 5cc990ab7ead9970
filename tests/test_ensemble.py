"""The blend of a cross-family search's leaders (`ml_project.search.blend`): ensemble selection, scoring kept predictions,
putting folds back in order, and the configs it refuses."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

from ml_project.config import load_config, with_model
from ml_project.models.factory import ensemble_pipeline
from ml_project.search.blend import blend_scorer, ensemble_selection
from ml_project.search.space import out_of_fold
from ml_project.sections import ModelConfig
from ml_project.train.preflight import check_ensemble


def test_selection_blends_models_that_err_differently_and_leaves_out_a_bad_one():
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    candidates = {
        "a": y + rng.normal(scale=1.0, size=2000),
        "b": y + rng.normal(scale=1.0, size=2000),
        "off": rng.normal(loc=5, size=2000),
    }  # far off: nothing to gain from it
    score = blend_scorer("neg_root_mean_squared_error", y, classification=False)
    counts, blended = ensemble_selection(candidates, score)
    assert (
        set(counts) == {"a", "b"} and abs(counts["a"] - counts["b"]) <= 2
    )  # equally good, independent errors: half each
    assert blended > max(score(candidates["a"]), score(candidates["b"])) + 0.2  # RMSE 1 → about 1/√2
    blend = sum(c * candidates[n] for n, c in counts.items()) / sum(counts.values())
    assert blended == pytest.approx(score(blend))  # the reported score is the weights' blend


def test_selection_keeps_the_best_model_alone_when_nothing_helps():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    good = y + rng.normal(scale=0.1, size=500)
    score = blend_scorer("neg_root_mean_squared_error", y, classification=False)
    counts, blended = ensemble_selection({"good": good, "bad": -y}, score)
    assert set(counts) == {"good"}  # a blend of one: the winner alone
    assert blended == pytest.approx(score(good)) and -blended == pytest.approx(mean_squared_error(y, good) ** 0.5)


def test_blend_scorer_scores_kept_predictions_as_scikit_learn_scores_a_model():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(size=300) * 0.7, 0.01, 0.99)
    assert blend_scorer("roc_auc", y, True)(p) == pytest.approx(roc_auc_score(y, p))
    assert blend_scorer("neg_log_loss", y, True)(p) == pytest.approx(-log_loss(y, p))
    y3 = rng.integers(0, 3, 300)
    p3 = rng.dirichlet([1, 1, 1], 300)
    assert blend_scorer("roc_auc_ovr", y3, True)(p3) == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr"))


def test_out_of_fold_puts_each_fold_back_in_row_order():
    splits = [(np.array([0, 2]), np.array([1, 3])), (np.array([1, 3]), np.array([0, 2]))]
    out = out_of_fold({0: np.array([10.0, 30.0]), 1: np.array([0.0, 20.0])}, splits)
    np.testing.assert_array_equal(out, [0, 10, 20, 30])
    wide = out_of_fold({0: np.ones((2, 3)), 1: np.zeros((2, 3))}, splits)
    assert wide.shape == (4, 3) and wide[1].sum() == 3 and wide[0].sum() == 0


def test_an_ensemble_config_is_checked_member_by_member(project):
    search = load_config(project.root / "configs" / "churn_search.yaml")

    def members(*entries):
        return with_model(search, ModelConfig(type="ensemble", params={"members": list(entries)}))

    assert (
        check_ensemble(
            members({"family": "churn_logistic", "weight": 2, "params": {"C": 0.5, "max_iter": 500}}), project
        )
        == []
    )
    assert "not one of tuning.families" in check_ensemble(members({"family": "churn_svm", "weight": 1}), project)[0]
    assert (
        "weight must be a positive number"
        in check_ensemble(members({"family": "churn_logistic", "weight": 0}), project)[0]
    )
    problems = check_ensemble(members({"family": "churn_logistic", "weight": 1, "params": {"C": -1}}), project)
    assert problems and problems[0].startswith("ensemble member churn_logistic: model.params.C"), problems
    with pytest.raises(ValueError, match="one entry per family"):
        ensemble_pipeline(members())


def test_an_ensemble_is_written_beside_its_families_and_a_blend_needs_them(project):
    from ml_project.errors import ConfigError

    folder = project.root / "configs"
    search = (folder / "churn_search.yaml").read_text()
    blend = search.replace(
        "tuning:",
        "model:\n  type: ensemble\n  params:\n    members:\n"
        "      - {family: churn_logistic, weight: 3, params: {C: 0.1, max_iter: 2000}}\n"
        "      - {family: churn_xgboost, weight: 1, params: {n_estimators: 50}}\ntuning:",
        1,
    )
    (folder / "blend.yaml").write_text(blend)
    config = load_config(folder / "blend.yaml")
    assert check_ensemble(config, project) == []
    pipeline = ensemble_pipeline(config)
    assert [name for name, _ in pipeline[-1].estimators] == ["churn_logistic", "churn_xgboost"] and pipeline[
        -1
    ].weights == [3.0, 1.0]
    (folder / "lonely.yaml").write_text(blend.split("\ntuning:")[0] + "\n")
    with pytest.raises(ConfigError, match="blends the configs listed in tuning.families"):
        load_config(folder / "lonely.yaml")
    (folder / "flag.yaml").write_text(
        (folder / "churn_xgboost.yaml").read_text().replace("tuning:", "tuning:\n  ensemble: true", 1)
    )
    with pytest.raises(ConfigError, match="ensemble blends the families of a cross-family search"):
        load_config(folder / "flag.yaml")


def test_a_blend_refuses_a_value_so_extreme_that_a_members_feature_overflows(project):
    "A blend's members each compute their own features: a row one of them cannot score is the client's, a 422, not a 500."
    from ml_project.errors import PredictionInputError
    from ml_project.serve.predictor import ModelPredictor
    from ml_project.split import load_splits
    from ml_project.train.experiment import run_experiment

    folder = project.root / "configs"
    (folder / "blend.yaml").write_text(
        (folder / "churn_search.yaml")
        .read_text()
        .replace(
            "tuning:",
            "model:\n  type: ensemble\n  params:\n    members:\n"
            "      - {family: churn_logistic, weight: 1, params: {C: 0.1, max_iter: 2000}}\n"
            "      - {family: churn_xgboost, weight: 1, params: {n_estimators: 20}}\ntuning:",
            1,
        )
    )
    config = load_config(folder / "blend.yaml")
    predictor = ModelPredictor.from_path(run_experiment(config, project, register=False).model_dir, project)
    customer = load_splits(config, project).X["test"].head(1).to_dict(orient="records")[0]
    extreme = {**customer, "monthly_charges": 1e308, "total_charges": 1e-308}
    with pytest.raises(PredictionInputError, match="row 0: 'monthly_charges' is too extreme for the model"):
        predictor.predict(extreme)
    many = predictor.predict([customer] * predictor.fast_rows + [extreme], on_error="reject")  # past the fast path
    assert (len(many), many.rejected[0]["row"]) == (predictor.fast_rows, predictor.fast_rows)
