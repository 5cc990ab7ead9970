"""The tests that guard a model: a release runs them on its candidate before anything is built (the `tests` gate of
`ml-project release`, with ML_PROJECT_CANDIDATE naming the candidate's verified folder). In the suite they run on
the churn XGBoost champion that the session trains.

A candidate passes when its files verify and describe it, the predictor's fast path and its pipeline give the same
answers on the golden rows and on awkward ones (each column missing in turn, a category never seen), a row's answer
does not depend on the rows sent with it, and a bad row is refused by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_project.deploy.release import golden_rows
from ml_project.errors import PredictionInputError
from ml_project.serve.predictor import ModelPredictor
from ml_project.settings import get_settings
from ml_project.train.files import verify_model

CANDIDATE = os.environ.get("ML_PROJECT_CANDIDATE")  # read before the fixtures clear ML_PROJECT_* settings


@pytest.fixture
def candidate(request) -> tuple[Path, object]:
    "The release's candidate (its folder and the settings it is read with), or the session's trained champion."
    if CANDIDATE:
        return Path(CANDIDATE), get_settings()
    from ml_project.train.registry import fetch_model

    settings = request.getfixturevalue("trained_churn")
    return fetch_model("churn__fast", settings)[0], settings


def _awkward(rows: list[dict], schema: dict) -> list[dict]:
    "The golden rows with each column missing in turn, and a category no training row had."
    out = [dict(r) for r in rows]
    for i, column in enumerate(schema):
        out[i % len(out)][column] = None
    for column, spec in schema.items():
        if spec["dtype"] == "category":
            out[-1][column] = "never seen before"
    return out


def _answers(result, classifier: bool) -> np.ndarray:
    return result.probabilities if classifier else result.values


def test_the_candidate_verifies_and_describes_itself(candidate):
    folder, settings = candidate
    _, metadata = verify_model(folder, settings)  # the hash first, nothing deserialised
    for key in ("input_schema", "example", "task", "target", "metrics", "selection_metric", "sha256"):
        assert metadata.get(key) is not None, f"metadata.json has no {key}"
    if metadata["task"] == "classification":
        assert metadata["classes"], "a classifier names its classes"
        if len(metadata["classes"]) == 2:
            assert metadata["threshold"] is not None, "a binary classifier records the threshold chosen on validation"
    assert set(metadata["example"]) == set(metadata["input_schema"])


def test_the_fast_path_and_the_pipeline_agree_on_golden_and_awkward_rows(candidate):
    folder, settings = candidate
    predictor = ModelPredictor.from_path(folder, settings)
    classifier = predictor.metadata["task"] == "classification"
    rows = golden_rows(folder)
    rows = [*rows, *_awkward(rows, predictor.schema)][: predictor.fast_rows]
    fast = predictor.predict(rows)  # at most fast_rows: the compiled path, where the model has one
    padded = rows * (predictor.fast_rows // len(rows) + 1)
    slow = predictor.predict(padded)  # more rows: the pipeline
    np.testing.assert_allclose(
        _answers(fast, classifier), _answers(slow, classifier)[: len(rows)], rtol=1e-9, atol=1e-9
    )
    if classifier:
        assert (fast.labels == slow.labels[: len(rows)]).all()


def test_a_rows_answer_does_not_depend_on_the_rows_beside_it(candidate):
    folder, settings = candidate
    predictor = ModelPredictor.from_path(folder, settings)
    classifier = predictor.metadata["task"] == "classification"
    rows = golden_rows(folder)
    together = _answers(predictor.predict(rows), classifier)
    alone = np.concatenate([_answers(predictor.predict([r]), classifier) for r in rows])
    backwards = _answers(predictor.predict(rows[::-1]), classifier)[::-1]
    np.testing.assert_allclose(alone.reshape(together.shape), together, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(backwards, together, rtol=1e-9, atol=1e-9)


def test_a_bad_row_is_refused_by_name(candidate):
    folder, settings = candidate
    predictor = ModelPredictor.from_path(folder, settings)
    numeric = next(c for c, s in predictor.schema.items() if s["dtype"] not in ("category", "object", "bool"))
    row = dict(golden_rows(folder, 0)[0], **{numeric: "not a number"})
    with pytest.raises(PredictionInputError, match=numeric):
        predictor.predict([row])
    assert len(predictor.predict(pd.DataFrame([golden_rows(folder, 0)[0]]))) == 1  # the good row still scores
