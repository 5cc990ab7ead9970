"""Pipeline overhead: our config-built pipelines against plain scikit-learn / XGBoost scripts on the same data.

For churn on the seed's fixed split (experiment_001: seed 42, 70/10/20), each model is fitted three ways:
- ours: `train_model(config)`, i.e. `build_pipeline(config)`: domain features, group statistics, imputation, encoding, scaling and clipping
  from the config, then the estimator, on raw rows;
- plain sklearn: the canonical hand-written scikit-learn script: `make_column_transformer(OneHotEncoder, StandardScaler
  for linear/MLP models)` and the same estimator with the same parameters (the goal's comparison);
- plain sklearn + features: the same script after our `churn_features` (so what remains is our configured
  preprocessing, group statistics and wrappers, not the domain features), for reference;
- plain pandas: `pd.get_dummies` and the same estimator (the leanest possible script), for reference.
It prints test ROC-AUC, fit seconds and predict rows/s, and our/plain time ratios measured in this run.
The goal is an overhead of at most 1.2x over plain scikit-learn, for fit and for predict.

Run: .venv/bin/python benchmarks/pipeline_overhead.py [--repeats 5]
"""
import argparse
import statistics
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from ml_project.config import get_settings, load_config
from ml_project.features import churn_features, features_and_target
from ml_project.models import EarlyStoppingXGBClassifier
from ml_project.neural import MLPClassifier
from ml_project.training import prepare_data, train_model

CONFIGS = ["experiment_001.yaml", "churn_xgboost.yaml", "churn_logistic.yaml", "churn_mlp.yaml"]


def plain_matrix(X: pd.DataFrame, columns=None) -> pd.DataFrame:
    "A plain script's preprocessing: one-hot everything that is not a number, aligned to the training columns."
    X = pd.get_dummies(X.assign(total_charges=X["total_charges"].fillna(0)), dtype=float)
    return X if columns is None else X.reindex(columns=columns, fill_value=0.0)


def plain_model(config, seed):
    params = dict(config.model.params)
    if config.model.type == "random_forest": return RandomForestClassifier(**{"random_state": seed, "n_jobs": -1, **params}), False
    if config.model.type == "xgboost": return EarlyStoppingXGBClassifier(**{"random_state": seed, "n_jobs": -1, **params}), False
    if config.model.type == "logistic_regression": return LogisticRegression(**{"random_state": seed, **params}), True
    return MLPClassifier(**{"random_state": seed, **params, "progress": False}), True


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); out = fn(); times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def sklearn_script(model, scale, impute=False):
    "The canonical scikit-learn pipeline: one-hot the categories, scale numbers for linear and neural models."
    numeric = StandardScaler() if scale else "passthrough"
    if impute: numeric = make_pipeline(SimpleImputer(strategy="median"), numeric)  # charge_ratio is undefined at 0 charges
    columns = make_column_transformer((OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                       make_column_selector(dtype_include="category")),
                                      (numeric, make_column_selector(dtype_include="number")))
    return make_pipeline(columns, model)


def main(repeats: int):
    settings = get_settings(mode="careful")
    rows = []
    for name in CONFIGS:
        config = load_config(settings.configs_dir / name)
        _, splits, _ = prepare_data(config, settings)
        X_train, y_train = features_and_target(splits["train"], config)
        X_test, y_test = features_and_target(splits["test"], config)
        row = {"model": config.model.type}

        ours, row["fit_s_ours"] = timed(lambda: train_model(X_train, y_train, config, settings), 3)
        proba, predict_ours = timed(lambda: ours.predict_proba(X_test)[:, 1], repeats)
        row["auc_ours"], row["predict_rows_s_ours"] = roc_auc_score(y_test, proba), len(X_test) / predict_ours

        sk, row["fit_s_sklearn"] = timed(lambda: sklearn_script(*plain_model(config, settings.seed)).fit(X_train, y_train), 3)
        proba, predict_sk = timed(lambda: sk.predict_proba(X_test)[:, 1], repeats)
        row["auc_sklearn"], row["predict_rows_s_sklearn"] = roc_auc_score(y_test, proba), len(X_test) / predict_sk

        # The same script on the same domain features: what is left is our configured preprocessing and wrappers.
        same = lambda: make_pipeline(FunctionTransformer(churn_features), sklearn_script(*plain_model(config, settings.seed), impute=True))
        sf, row["fit_s_sklearn_features"] = timed(lambda: same().fit(X_train, y_train), 3)
        proba, predict_sf = timed(lambda: sf.predict_proba(X_test)[:, 1], repeats)
        row["auc_sklearn_features"], row["predict_rows_s_sklearn_features"] = roc_auc_score(y_test, proba), len(X_test) / predict_sf

        def pandas_fit():
            model, scale = plain_model(config, settings.seed)
            Xt = plain_matrix(X_train)
            scaler = StandardScaler().fit(Xt) if scale else None
            model.fit(scaler.transform(Xt) if scaler else Xt, y_train)
            return model, scaler, Xt.columns
        (model, scaler, columns), row["fit_s_pandas"] = timed(pandas_fit, 3)
        def pandas_predict():
            Xp = plain_matrix(X_test, columns)
            return model.predict_proba(scaler.transform(Xp) if scaler else Xp)[:, 1]
        proba, predict_pd = timed(pandas_predict, repeats)
        row["auc_pandas"], row["predict_rows_s_pandas"] = roc_auc_score(y_test, proba), len(X_test) / predict_pd

        row["fit_ratio_vs_sklearn"] = row["fit_s_ours"] / row["fit_s_sklearn"]
        row["predict_ratio_vs_sklearn"] = predict_ours / predict_sk
        row["fit_ratio_vs_sklearn_features"] = row["fit_s_ours"] / row["fit_s_sklearn_features"]
        row["predict_ratio_vs_sklearn_features"] = predict_ours / predict_sf
        row["fit_ratio_vs_pandas"] = row["fit_s_ours"] / row["fit_s_pandas"]
        row["predict_ratio_vs_pandas"] = predict_ours / predict_pd
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    pd.set_option("display.width", 250)
    print(f"churn, fixed split (seed {settings.seed}): {len(X_train):,} train rows, {len(X_test):,} test rows; "
          f"fit: median of 3, predict: median of {repeats} runs over the whole test split")
    print(table[[c for c in table if c.startswith("auc")]].round(4).to_string(), end="\n\n")
    print(table[[c for c in table if c.startswith(("fit_s", "predict_rows"))]].round(3).to_string(), end="\n\n")
    print(table[[c for c in table if "ratio" in c]].round(2).to_string())
    print("ratios are our time / plain time; goal: at most 1.2 against plain scikit-learn")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
