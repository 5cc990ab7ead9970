"""Custom estimators follow scikit-learn's conventions."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from ml_project.features import GroupStatsEncoder
from ml_project.models.factory import EarlyStoppingXGBClassifier, EarlyStoppingXGBRegressor
from ml_project.models.neural import MLPClassifier, MLPRegressor
from ml_project.preprocessing import IQRClipper, PandasOneHotEncoder, PandasOrdinalEncoder


@parametrize_with_checks(
    [
        IQRClipper(),
        IQRClipper(factor=3.0),
        PandasOneHotEncoder(),
        PandasOneHotEncoder(max_categories=3),
        PandasOrdinalEncoder(),
    ]
)
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


@parametrize_with_checks(
    [
        MLPClassifier(hidden_sizes=(16,), lr=0.01, max_epochs=60, progress=False),
        MLPRegressor(hidden_sizes=(16,), lr=0.01, max_epochs=60, progress=False),
    ]
)
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


def _categorical_tables(seed=0, n=300):
    "Training and new rows with every kind of categorical column: strings with missing values, pandas categoricals, bools, numbers."
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team", "gold", None], n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    train = pd.DataFrame(
        {
            "plan": plan.astype(object),
            "plan_cat": pd.Categorical(plan, categories=["team", "pro", "basic", "gold", "unused"]),
            "flag": rng.choice([True, False], n),
            "rating": rng.choice([1.0, 2.0, 3.0, np.nan], n),
        }
    )
    new = pd.DataFrame(
        {
            "plan": ["platinum", None, "basic", "gold"],
            "plan_cat": pd.Categorical(["platinum", None, "basic", "gold"], categories=["gold", "basic", "platinum"]),
            "flag": [True, False, True, True],
            "rating": [7.0, np.nan, 1.0, 3.0],
        }
    )
    return train, new


@pytest.mark.parametrize("max_categories", [None, 2, 3, 4, 30])
def test_pandas_one_hot_matches_scikit_learn(max_categories):
    # The same columns, names and values as OneHotEncoder for each kind of column, seen and unseen levels, and missing values.
    from sklearn.preprocessing import OneHotEncoder

    train, new = _categorical_tables()
    ours = PandasOneHotEncoder(max_categories=max_categories).fit(train)
    theirs = OneHotEncoder(
        max_categories=max_categories,
        sparse_output=False,
        handle_unknown="infrequent_if_exist" if max_categories else "ignore",
    ).fit(train)
    assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
    for X in [train, new, new.to_numpy()]:
        np.testing.assert_array_equal(ours.transform(X), theirs.transform(X))
    for mine, sk in zip(ours.categories_, theirs.categories_):
        assert [str(v) for v in mine] == [str(v) for v in sk]


def test_pandas_one_hot_matches_on_the_shipped_data(project):
    from sklearn.preprocessing import OneHotEncoder

    from ml_project.config import load_config
    from ml_project.data import load_dataset
    from ml_project.settings import get_settings

    settings = get_settings()
    for name in ["experiment_001.yaml", "ames_random_forest.yaml"]:
        frame = load_dataset(load_config(settings.configs_dir / name), settings).frame
        X = frame.select_dtypes(include=["category", "object", "string", "bool"])
        train, test = X.iloc[::2], X.iloc[1::2]
        ours = PandasOneHotEncoder(max_categories=10).fit(train)
        theirs = OneHotEncoder(max_categories=10, handle_unknown="infrequent_if_exist", sparse_output=False).fit(train)
        assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
        np.testing.assert_array_equal(ours.transform(test), theirs.transform(test))


def test_pandas_ordinal_matches_scikit_learn(project):
    # The same codes as OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1): every kind of column, unseen
    # levels (-1), missing values (NaN if seen in fit, else -1), numpy input, and the shipped Ames and churn data.
    from sklearn.preprocessing import OrdinalEncoder

    from ml_project.config import load_config
    from ml_project.data import load_dataset
    from ml_project.settings import get_settings

    train, new = _categorical_tables()
    pairs = [(train, [train, new, new.to_numpy()])]
    settings = get_settings()
    for name in ["experiment_001.yaml", "ames_random_forest.yaml"]:
        X = load_dataset(load_config(settings.configs_dir / name), settings).frame.select_dtypes(
            include=["category", "object", "string", "bool"]
        )
        pairs.append((X.iloc[::2], [X.iloc[1::2]]))
    for fit_on, tables in pairs:
        ours = PandasOrdinalEncoder().fit(fit_on)
        theirs = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(fit_on)
        assert list(ours.get_feature_names_out()) == list(theirs.get_feature_names_out())
        for X in tables:
            np.testing.assert_array_equal(ours.transform(X), theirs.transform(X))
    # a request whose categorical column is all missing arrives as floats: missing, not an error
    ours = PandasOrdinalEncoder().fit(train)
    all_missing = new.assign(plan=np.nan, plan_cat=np.nan)
    assert np.isnan(ours.transform(all_missing)[:, :2]).all()
    assert clone(ours).get_params() == {}
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ours)).transform(new), ours.transform(new))


def test_pandas_one_hot_errors_and_contract():
    train, new = _categorical_tables()
    with pytest.raises(ValueError, match="max_categories must be at least 2"):
        PandasOneHotEncoder(max_categories=1).fit(train)
    with pytest.raises(NotFittedError):
        PandasOneHotEncoder().transform(train)
    encoder = PandasOneHotEncoder().fit(train)
    with pytest.raises(ValueError, match="yet now missing:\n- flag"):
        encoder.transform(train.iloc[:, :2])
    with pytest.raises(TypeError, match="column 'mixed': each value must be a string or a number"):
        PandasOneHotEncoder().fit(pd.DataFrame({"mixed": ["a", 1, "b"]}))
    with pytest.raises(ValueError, match="0 sample"):
        PandasOneHotEncoder().fit(train.iloc[:0])
    assert clone(encoder).get_params() == {"max_categories": None}
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(encoder)).transform(new), encoder.transform(new))


@pytest.mark.parametrize("as_category", [False, True])
def test_group_stats_unseen_and_missing_groups(as_category):
    # An unseen or missing group gets the training mean (difference from it) and frequency 0, for object and categorical columns.
    train = pd.DataFrame({"g": ["a", "a", "b", "b"], "v": [1.0, 3.0, 10.0, 20.0]})
    new = pd.DataFrame({"g": ["a", "z", None, "b"], "v": [2.0, 5.0, 5.0, np.nan]})
    if as_category:
        train["g"], new["g"] = train["g"].astype("category"), pd.Categorical(new["g"], categories=["z", "b", "a"])
    out = GroupStatsEncoder([("g", "v")]).fit(train).transform(new)
    np.testing.assert_allclose(out["v_vs_g_mean"], [0.0, 5.0 - 8.5, 5.0 - 8.5, np.nan])
    np.testing.assert_allclose(out["g_freq"], [0.5, 0.0, 0.0, 0.5])
    pd.testing.assert_frame_equal(out[["g", "v"]], new)
