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
