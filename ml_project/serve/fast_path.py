"""The predictor's fast path: a fitted pipeline compiled into plain NumPy steps for a few rows at a time.

Hand-written (not exported from a notebook): dense machinery with nothing to read in a narrative; its
tests are in `tests/test_fast_path.py`, and `nbs/08a_predictor.ipynb` says why it exists.

A fitted pipeline spends about 10 ms on one row, almost all of it building and copying one-row
DataFrames; the XGBoost booster itself takes 0.2 ms. `compile_pipeline` walks the fitted steps and
returns functions of a dict of column arrays that do the same arithmetic with the same fitted
state: the domain features through the very functions the pipeline step calls (`churn_columns`),
group statistics through the encoder's own `added_columns`, encoders through their `transform_rows`,
scikit-learn's imputer, clipper and scalers through their fitted attributes, and the estimator as the
pipeline calls it (XGBoost through a one-thread copy of its booster). A step it does not know makes
it return None, and the predictor then uses the pipeline for every input: slower, never different.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

from ml_project.features import DOMAIN_COLUMNS, GroupStatsEncoder
from ml_project.preprocessing import IQRClipper, PandasOneHotEncoder, _as_str

Columns = dict  # column name -> 1-D array of the rows


class NotCompilable(Exception):
    "A pipeline step the fast path has no NumPy version of."


def _feature_step(step) -> Callable[[Columns], Columns]:
    "A feature step (domain features, group statistics) as a function adding columns to a dict."
    if isinstance(step, FunctionTransformer) and step.func in DOMAIN_COLUMNS and not step.kw_args:
        columns = DOMAIN_COLUMNS[step.func]
        return lambda cols: {**cols, **columns(cols)}
    if isinstance(step, GroupStatsEncoder):
        return lambda cols: {**cols, **step.added_columns(cols)}
    raise NotCompilable(type(step).__name__)


def _numeric_step(step) -> Callable[[np.ndarray], np.ndarray]:
    "A fitted numeric transformer as array arithmetic on its fitted attributes, in scikit-learn's own order."
    if isinstance(step, SimpleImputer) and not step.add_indicator and step.keep_empty_features:
        fill = step.statistics_.astype(float)  # keep_empty_features: an all-missing training column has 0 here
        return lambda X: np.where(np.isnan(X), fill, X)
    if isinstance(step, IQRClipper):
        return lambda X: np.clip(X, step.lower_, step.upper_)
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else 0.0
        scale = step.scale_ if step.with_std else 1.0
        return lambda X: (X - mean) / scale
    if isinstance(step, RobustScaler):
        center = step.center_ if step.with_centering else 0.0
        scale = step.scale_ if step.with_scaling else 1.0
        return lambda X: (X - center) / scale
    if isinstance(step, MinMaxScaler) and not step.clip:
        return lambda X: X * step.scale_ + step.min_
    raise NotCompilable(type(step).__name__)


def _categorical_step(step) -> Callable[[list], list | np.ndarray]:
    "A fitted categorical transformer on a list of object arrays (one per column); the encoder ends the chain with a float array."
    if isinstance(step, FunctionTransformer) and step.func is _as_str:
        return lambda columns: columns  # the columns already hold objects, NaN for missing
    if isinstance(step, SimpleImputer) and step.strategy == "most_frequent" and not step.add_indicator:
        return lambda columns: [
            np.where([v is None or v != v for v in values], fill, values).astype(object)
            for values, fill in zip(columns, step.statistics_)
        ]
    if isinstance(step, PandasOneHotEncoder):  # the ordinal encoder too: it is one
        return step.transform_rows
    raise NotCompilable(type(step).__name__)


def _chain(steps: list) -> Callable:
    def run(value):
        for step in steps:
            value = step(value)
        return value

    return run


def _column_transformer(ct: ColumnTransformer) -> Callable[[Columns], np.ndarray]:
    "The preprocessing `ColumnTransformer`: each part on its columns, side by side in its order (the remainder is dropped)."
    if ct.remainder != "drop" or getattr(ct, "sparse_output_", False):
        raise NotCompilable("ColumnTransformer remainder")
    parts = []
    for name, transformer, columns in ct.transformers_:
        if transformer == "drop" or name == "remainder" or not len(columns):
            continue
        if not isinstance(transformer, Pipeline):
            raise NotCompilable(f"ColumnTransformer part {name}")
        steps = [s for _, s in transformer.steps]
        if isinstance(steps[-1], PandasOneHotEncoder):
            run = _chain([_categorical_step(s) for s in steps])
            parts.append(
                lambda cols, columns=list(columns), run=run: run([np.asarray(cols[c], dtype=object) for c in columns])
            )
        else:
            run = _chain([_numeric_step(s) for s in steps])
            parts.append(
                lambda cols, columns=list(columns), run=run: run(
                    np.column_stack([np.asarray(cols[c], dtype=float) for c in columns])
                )
            )
    return lambda cols: np.hstack([part(cols) for part in parts])


def _estimator(estimator, classifier: bool) -> Callable[[np.ndarray], np.ndarray]:
    "The final estimator's probabilities (classifier) or predictions, as the pipeline asks for them."
    from xgboost import XGBModel

    if isinstance(estimator, XGBModel):
        booster = estimator.get_booster().copy()
        booster.set_param({"nthread": 1})  # a few rows: threads cost more than they save
        rounds = estimator._get_iteration_range(None)  # early stopping's best round, as predict uses

        def predict(X):
            out = booster.inplace_predict(X, iteration_range=rounds, missing=estimator.missing, validate_features=False)
            if not classifier:
                return out
            return out if out.ndim == 2 else np.column_stack([1 - out, out])

        return predict
    if isinstance(estimator, TransformedTargetRegressor):
        return estimator.predict
    return estimator.predict_proba if classifier else estimator.predict


@dataclass(frozen=True)
class CompiledPipeline:
    "A fitted pipeline as plain functions: input columns to the estimator's matrix, and that matrix to scores."

    matrix: Callable[[Columns], np.ndarray]
    estimate: Callable[[np.ndarray], np.ndarray]

    def __call__(self, columns: Columns) -> np.ndarray:
        "What `pipeline.predict_proba` (or `predict`) returns for these columns."
        return self.estimate(self.matrix(columns))


def compile_pipeline(pipeline: Pipeline, classifier: bool) -> CompiledPipeline | None:
    "The pipeline compiled to functions on a dict of input column arrays; None if a step is unknown."
    if (
        not isinstance(pipeline, Pipeline)
        or len(pipeline.steps) < 2
        or not isinstance(pipeline.steps[-2][1], ColumnTransformer)
    ):
        return None
    try:
        features = _chain([_feature_step(step) for _, step in pipeline.steps[:-2]])
        preprocess = _column_transformer(pipeline.steps[-2][1])
        estimator = _estimator(pipeline.steps[-1][1], classifier)
    except NotCompilable:
        return None
    return CompiledPipeline(lambda cols: preprocess(features(cols)), estimator)
