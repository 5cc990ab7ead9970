"""The predictor's fast path gives the pipeline's answer, on every shipped config, for ordinary rows, unseen categories and missing values."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_project.config import load_config
from ml_project.serve.fast_path import compile_pipeline
from ml_project.serve.predictor import ModelPredictor
from ml_project.split import load_splits
from ml_project.train.files import save_model
from ml_project.train.training import fast_caps, train_model

SHIPPED = sorted(
    p.name
    for p in (Path(__file__).resolve().parent.parent / "configs").glob("*.yaml")
    if load_config(p).model is not None
)  # every config that trains a model (not a search across families)


def _awkward(X: pd.DataFrame, schema: dict) -> pd.DataFrame:
    "Rows a service meets: every column missing in turn, and a category no training row had."
    rows = X.head(40).astype(object).reset_index(drop=True)
    for i, column in enumerate(rows.columns):
        rows.loc[i % len(rows), column] = None
    for column, spec in schema.items():
        if spec["dtype"] == "category":
            rows.loc[len(rows) - 1, column] = "never seen before"
    return rows


@pytest.mark.parametrize("config_name", SHIPPED)
def test_fast_path_equals_the_pipeline(project, config_name):
    config = fast_caps(load_config(project.configs_dir / config_name), project)
    splits = load_splits(config, project)
    pipeline = train_model(*splits["train"], config, project)
    predictor = ModelPredictor.from_path(save_model(pipeline, config, project, splits, metrics={}), project)
    assert predictor._fast is not None, f"{config_name}: a shipped config should compile"
    classifier = config.data.task == "classification"
    reference = pipeline.predict_proba if classifier else pipeline.predict
    X_test, _ = splits["test"]
    # as the data comes (typed columns, pandas categoricals): the compiled steps on plain arrays
    rows = X_test.head(predictor.fast_rows)
    columns = {
        c: rows[c].to_numpy(dtype=float) if pd.api.types.is_numeric_dtype(rows[c]) else rows[c].to_numpy(dtype=object)
        for c in rows.columns
    }
    np.testing.assert_allclose(compile_pipeline(pipeline, classifier)(columns), reference(rows), rtol=1e-6, atol=1e-6)
    # through the predictor: the fast path (<= fast_rows) and the pipeline path (more rows) agree, awkward rows included
    awkward = _awkward(X_test, predictor.schema)
    fast = predictor.predict(awkward)
    slow = predictor.predict(pd.concat([awkward] * (predictor.fast_rows // len(awkward) + 1), ignore_index=True))
    got = fast.probabilities if classifier else fast.values
    want = (slow.probabilities if classifier else slow.values)[: len(awkward)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if classifier:
        assert (fast.labels == slow.labels[: len(awkward)]).all()
    assert any("never seen in training" in w for w in fast.warnings) or not any(
        s["dtype"] == "category" for s in predictor.schema.values()
    )


def test_an_unknown_step_leaves_the_predictor_on_the_pipeline(project, tmp_path):
    frame = pd.DataFrame(
        {
            "signup": pd.date_range("2024-01-01", periods=300, freq="D").astype(str),
            "spend": np.arange(300) % 17 * 1.5,
            "plan": np.where(np.arange(300) % 3, "basic", "pro"),
        }
    )
    frame["renewed"] = np.where(frame["spend"] > 10, "yes", "no")
    frame.to_csv(tmp_path / "dated.csv", index=False)
    (tmp_path / "dated.yaml").write_text(f"""
experiment: {{name: dated}}
data: {{source: {tmp_path / "dated.csv"}, target: renewed, positive_class: "yes"}}
features: {{date_columns: [signup]}}
model: {{type: logistic_regression}}
""")
    config = load_config(tmp_path / "dated.yaml")
    splits = load_splits(config, project)
    pipeline = train_model(*splits["train"], config, project)
    assert compile_pipeline(pipeline, classifier=True) is None  # date features have no compiled version
    predictor = ModelPredictor.from_path(save_model(pipeline, config, project, splits, metrics={}), project)
    X_test, _ = splits["test"]
    np.testing.assert_allclose(predictor.predict(X_test.head(3)).probabilities, pipeline.predict_proba(X_test.head(3)))
