"""Pipeline overhead: our config-built pipelines against plain scikit-learn / XGBoost scripts on the same data.

For churn on the seed's fixed split (experiment_001: seed 42, 70/10/20), each model is fitted three ways:
- ours: `train_model(config)`, i.e. `build_pipeline(config)`: domain features, group statistics, imputation, encoding, scaling and clipping
  from the config, then the estimator, on raw rows;
- plain sklearn: the canonical hand-written scikit-learn script: `make_column_transformer(OneHotEncoder, StandardScaler
  for linear/MLP models)` and the same estimator with the same parameters (the goal's comparison);
- plain sklearn + features: the same script after the config's feature steps (domain features and group
  statistics), so both fit the same columns and what differs is only how we preprocess (the cleanest overhead figure);
- plain pandas: `pd.get_dummies` and the same estimator (the leanest possible script), for reference.
It prints test ROC-AUC, fit seconds and predict rows/s, and our/plain time ratios measured in this run.
The goal is an overhead of at most 1.2x over plain scikit-learn, for fit and for predict. XGBoost and the MLP
stop early, and on different inputs they stop after different numbers of rounds / epochs: that is model work,
not overhead. So here every variant trains them for the same fixed work (FIXED_WORK: 300 rounds, 15 epochs, no
early stopping); the rounds each fit ran are printed to show it.

Run: .venv/bin/python benchmarks/pipeline_overhead.py [--repeats 20]
"""

import argparse
import statistics
import time

import pandas as pd
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_project.config import load_config, with_model_params
from ml_project.features import feature_steps
from ml_project.models.factory import EarlyStoppingXGBClassifier
from ml_project.models.neural import MLPClassifier
from ml_project.settings import get_settings
from ml_project.split import load_splits
from ml_project.train.training import train_model

CONFIGS = ["experiment_001.yaml", "churn_xgboost.yaml", "churn_logistic.yaml", "churn_mlp.yaml"]
FIXED_WORK = {
    "xgboost": {"n_estimators": 300, "early_stopping_rounds": None},
    "mlp": {"max_epochs": 15, "validation_fraction": 0.0},
}


def plain_matrix(X: pd.DataFrame, columns=None) -> pd.DataFrame:
    "A plain script's preprocessing: one-hot everything that is not a number, aligned to the training columns."
    X = pd.get_dummies(X.assign(total_charges=X["total_charges"].fillna(0)), dtype=float)
    return X if columns is None else X.reindex(columns=columns, fill_value=0.0)


def plain_model(config, seed):
    params = dict(config.model.params)
    if config.model.type == "random_forest":
        return RandomForestClassifier(**{"random_state": seed, "n_jobs": -1, **params}), False
    if config.model.type == "xgboost":
        return EarlyStoppingXGBClassifier(**{"random_state": seed, "n_jobs": -1, **params}), False
    if config.model.type == "logistic_regression":
        return LogisticRegression(**{"random_state": seed, **params}), True
    return MLPClassifier(**{"random_state": seed, **params, "progress": False}), True


def rounds(model) -> int:
    "Boosting rounds or epochs a model trained for; 1 for the others."
    while hasattr(model, "steps"):
        model = model[-1]
    if hasattr(model, "get_booster"):
        return model.get_booster().num_boosted_rounds()
    return getattr(model, "n_epochs_", 1)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def sklearn_script(model, scale, impute=False):
    "The canonical scikit-learn pipeline: one-hot the categories, scale numbers for linear and neural models."
    numeric = StandardScaler() if scale else "passthrough"
    if impute:
        numeric = make_pipeline(SimpleImputer(strategy="median"), numeric)  # charge_ratio is undefined at 0 charges
    columns = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), make_column_selector(dtype_include="category")),
        (numeric, make_column_selector(dtype_include="number")),
    )
    return make_pipeline(columns, model)


def main(repeats: int):
    settings = get_settings(mode="careful")
    rows = []
    for name in CONFIGS:
        config = load_config(settings.configs_dir / name)
        config = with_model_params(config, {**config.model.params, **FIXED_WORK.get(config.model.type, {})})
        splits = load_splits(config, settings)
        (X_train, y_train), (X_test, y_test) = splits["train"], splits["test"]
        row = {"model": config.model.type}

        ours, row["fit_s_ours"] = timed(lambda: train_model(X_train, y_train, config, settings), 5)
        proba, predict_ours = timed(lambda: ours.predict_proba(X_test)[:, 1], repeats)
        row["auc_ours"], row["predict_rows_s_ours"] = roc_auc_score(y_test, proba), len(X_test) / predict_ours

        sk, row["fit_s_sklearn"] = timed(
            lambda: sklearn_script(*plain_model(config, settings.seed)).fit(X_train, y_train), 5
        )
        proba, predict_sk = timed(lambda: sk.predict_proba(X_test)[:, 1], repeats)
        row["auc_sklearn"], row["predict_rows_s_sklearn"] = roc_auc_score(y_test, proba), len(X_test) / predict_sk

        # The same script given the same feature columns: what is left is our configured preprocessing and wrappers.
        def same():
            return Pipeline(
                [
                    *feature_steps(config.features),
                    ("plain", sklearn_script(*plain_model(config, settings.seed), impute=True)),
                ]
            )

        sf, row["fit_s_sklearn_features"] = timed(lambda: same().fit(X_train, y_train), 5)
        proba, predict_sf = timed(lambda: sf.predict_proba(X_test)[:, 1], repeats)
        row["auc_sklearn_features"], row["predict_rows_s_sklearn_features"] = (
            roc_auc_score(y_test, proba),
            len(X_test) / predict_sf,
        )

        def pandas_fit():
            model, scale = plain_model(config, settings.seed)
            Xt = plain_matrix(X_train)
            scaler = StandardScaler().fit(Xt) if scale else None
            model.fit(scaler.transform(Xt) if scaler else Xt, y_train)
            return model, scaler, Xt.columns

        (model, scaler, columns), row["fit_s_pandas"] = timed(pandas_fit, 5)

        def pandas_predict():
            Xp = plain_matrix(X_test, columns)
            return model.predict_proba(scaler.transform(Xp) if scaler else Xp)[:, 1]

        proba, predict_pd = timed(pandas_predict, repeats)
        row["auc_pandas"], row["predict_rows_s_pandas"] = roc_auc_score(y_test, proba), len(X_test) / predict_pd

        row["rounds_ours"], row["rounds_sklearn"], row["rounds_sklearn_features"], row["rounds_pandas"] = map(
            rounds, (ours, sk, sf, model)
        )
        row["fit_ratio_vs_sklearn"] = row["fit_s_ours"] / row["fit_s_sklearn"]
        row["predict_ratio_vs_sklearn"] = predict_ours / predict_sk
        row["fit_ratio_vs_sklearn_features"] = row["fit_s_ours"] / row["fit_s_sklearn_features"]
        row["predict_ratio_vs_sklearn_features"] = predict_ours / predict_sf
        row["fit_ratio_vs_pandas"] = row["fit_s_ours"] / row["fit_s_pandas"]
        row["predict_ratio_vs_pandas"] = predict_ours / predict_pd
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    pd.set_option("display.width", 250)
    print(
        f"churn, fixed split (seed {settings.seed}): {len(X_train):,} train rows, {len(X_test):,} test rows; "
        f"fit: median of 5, predict: median of {repeats} runs over the whole test split"
    )
    print(table[[c for c in table if c.startswith("auc")]].round(4).to_string(), end="\n\n")
    print(table[[c for c in table if c.startswith(("fit_s", "predict_rows"))]].round(3).to_string(), end="\n\n")
    print(table[[c for c in table if c.startswith("rounds")]].to_string(), end="\n\n")
    print(table[[c for c in table if "ratio" in c]].round(2).to_string())
    print("ratios are our time / plain time ; goal: at most 1.2 against plain scikit-learn")
    for plain in ["sklearn", "sklearn_features"]:
        goal = table[[f"fit_ratio_vs_{plain}", f"predict_ratio_vs_{plain}"]].to_numpy()
        print(f"vs {plain}: goal met for {int((goal <= 1.2).sum())} of {goal.size} ratios; worst {goal.max():.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="predict runs per model (fit: 5)")
    main(parser.parse_args().repeats)
