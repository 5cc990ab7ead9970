"""Custom estimators follow scikit-learn's conventions."""
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml_project.features import GroupStatsEncoder
from ml_project.preprocessing import IQRClipper


@parametrize_with_checks([IQRClipper(), IQRClipper(factor=3.0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"g": rng.choice(["a", "b", "c"], n), "v": rng.normal(size=n), "w": rng.normal(size=n)})


def test_group_stats_encoder_contract():
    # GroupStatsEncoder works on named columns, so scikit-learn's array-based checks do not apply;
    # this checks the parts of the contract that do: params, clone, fit returns self, unfitted error, pickling.
    X = _frame()
    encoder = GroupStatsEncoder(pairs=[("g", "v")])
    assert encoder.get_params() == {"pairs": [("g", "v")]}
    assert clone(encoder).get_params() == encoder.get_params()
    with pytest.raises(NotFittedError):
        encoder.transform(X)
    assert encoder.fit(X) is encoder
    out = encoder.transform(X)
    assert list(encoder.get_feature_names_out()) == list(out.columns)
    restored = pickle.loads(pickle.dumps(encoder))
    pd.testing.assert_frame_equal(restored.transform(X), out)
    with pytest.raises(TypeError, match="DataFrame"):
        GroupStatsEncoder([(0, 1)]).fit(X.to_numpy())


def test_group_stats_unseen_group_and_missing_value():
    encoder = GroupStatsEncoder([("g", "v")]).fit(_frame())
    new = pd.DataFrame({"g": ["zzz", "a"], "v": [1.0, np.nan], "w": [0.0, 0.0]})
    out = encoder.transform(new)
    assert out.loc[0, "g_freq"] == 0.0
    assert out.loc[0, "v_vs_g_mean"] == pytest.approx(1.0 - encoder.overall_[("g", "v")])
    assert np.isnan(out.loc[1, "v_vs_g_mean"])  # left for the imputer, not invented here


from ml_project.models import EarlyStoppingXGBClassifier, EarlyStoppingXGBRegressor
from ml_project.neural import MLPClassifier, MLPRegressor


@parametrize_with_checks([MLPClassifier(hidden_sizes=(16,), lr=0.01, max_epochs=60, progress=False),
                          MLPRegressor(hidden_sizes=(16,), lr=0.01, max_epochs=60, progress=False)])
def test_mlp_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [EarlyStoppingXGBClassifier, EarlyStoppingXGBRegressor])
def test_early_stopping_xgboost_is_a_clean_estimator(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] > 0).astype(int) if cls is EarlyStoppingXGBClassifier else X[:, 0] * 3
    model = cls(n_estimators=500, learning_rate=0.3, early_stopping_rounds=10, validation_fraction=0.2, random_state=0)
    assert clone(model).get_params() == model.get_params()
    model.fit(X, y)
    assert model.best_iteration < 499  # stopped on its own held-out rows
    assert "validation_fraction" not in model.get_xgb_params()
