"""A cross-family search's best trials blended: greedy ensemble selection on their out-of-fold predictions, refitted as one voting model.

Hand-written (not exported from a notebook): machinery behind `tuning.ensemble`, shown in the tuning notebook
(`nbs/33_search.tune.ipynb`) and tested in `tests/test_ensemble.py`. The out-of-fold predictions it blends are kept by the
objective (`ml_project.search.space`); the `ensemble` model type that refits a blend is `ml_project.models.factory`'s.

The families of a search often score within the CV noise of each other (churn: logistic regression 0.845 ROC-AUC against
XGBoost's 0.843), and models that err differently average into a better one. With `tuning.ensemble: true`, a trial that
leads its family keeps its out-of-fold predictions in the study (so the blend needs no extra training, and workers on other
machines share them). After the search, Caruana's ensemble selection (Caruana et al., ICML 2004; auto-sklearn and AutoGluon
use it) adds, with replacement, the family whose predictions most improve the blend's CV score, and keeps the best blend it
met: the counts are the weights. A blend of one family is the winner alone. The blend is refitted as a scikit-learn
`VotingClassifier` (soft) or `VotingRegressor` of the families' pipelines, each with its trial's parameters, and the registry
judges it like any challenger (validation, never test).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import get_scorer

from ml_project.config import ExperimentConfig, with_model
from ml_project.search.families import winning_config
from ml_project.search.space import OOF, refit_config, tuning_metric
from ml_project.sections import ModelConfig, lower_is_better
from ml_project.settings import Settings
from ml_project.train.training import fast_caps, scorers

ROUNDS = (
    25  # ensemble selection's additions (auto-sklearn uses 50 from many more candidates; a few families need fewer)
)


class GivenPredictions(BaseEstimator):
    "An 'estimator' whose predictions for rows `X` (positions) are given: lets a scikit-learn scorer score a blend."

    def __init__(self, predictions: np.ndarray):
        self.predictions = predictions

    def fit(self, X=None, y=None):
        return self

    def _rows(self, X):
        return np.asarray(X, dtype=int).ravel()


class _GivenProbabilities(ClassifierMixin, GivenPredictions):
    @property
    def classes_(self):
        return np.arange(2 if self.predictions.ndim == 1 else self.predictions.shape[1])

    def predict_proba(self, X):
        p = self.predictions[self._rows(X)]
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class _GivenValues(RegressorMixin, GivenPredictions):
    def predict(self, X):
        return self.predictions[self._rows(X)]


def blend_scorer(
    metric: str,  # the scikit-learn scorer's name (`scorers` maps a config's metric to it)
    y: pd.Series | np.ndarray,  # the encoded target of the rows predicted
    classification: bool,  # probabilities or values
) -> Callable[[np.ndarray], float]:
    "A function of out-of-fold predictions → their score, greater is better (scikit-learn's sign)."
    scorer, rows, y = get_scorer(metric), np.arange(len(y)), np.asarray(y)
    given = _GivenProbabilities if classification else _GivenValues
    return lambda predictions: float(scorer(given(predictions), rows, y))


def ensemble_selection(
    predictions: dict[str, np.ndarray],  # each candidate's out-of-fold predictions
    score: Callable[[np.ndarray], float],  # predictions → score, greater is better
    rounds: int = ROUNDS,  # additions, with replacement
) -> tuple[dict[str, int], float]:
    "Caruana's greedy selection: each round adds the candidate that most improves the blend; the best blend met, as counts, and its score."
    counts, total, best = dict.fromkeys(predictions, 0), None, (-np.inf, {})
    for k in range(1, rounds + 1):
        scored = {name: score(p if total is None else (total + p) / k) for name, p in predictions.items()}
        pick = max(scored, key=scored.get)  # ties keep the candidates' order
        counts[pick] += 1
        total = predictions[pick] if total is None else total + predictions[pick]
        if scored[pick] > best[0]:
            best = (scored[pick], {name: c for name, c in counts.items() if c})
    return best[1], best[0]


def family_leaders(
    study: optuna.Study,  # a cross-family study with `tuning.ensemble`
) -> dict[str, optuna.trial.FrozenTrial]:
    "Each family's best finished trial that kept its out-of-fold predictions."
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    leaders = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        family = t.params.get("family")
        if OOF in t.user_attrs and (family not in leaders or sign * t.value > sign * leaders[family].value):
            leaders[family] = t
    return leaders


def ensemble_config(
    config: ExperimentConfig,  # the search config (`tuning.ensemble: true`)
    settings: Settings,  # mode (the network's epoch cap) and seed
    study: optuna.Study,  # its study
    y: pd.Series,  # the training split's encoded target, the rows the predictions are of
) -> tuple[ExperimentConfig | None, dict]:
    """The blend to refit, as a config of model type `ensemble` (None when one family alone scores best), and a report:
    each family's weight, trial and CV score, and the blend's CV score from the kept predictions."""

    leaders = family_leaders(study)
    if len(leaders) < 2:
        return None, {"families": {name: {"trial": t.number, "cv": t.value} for name, t in leaders.items()}}
    metric = tuning_metric(config)
    score = blend_scorer(
        scorers([metric], config.data.task, y.nunique())[metric], y, config.data.task == "classification"
    )
    sign = (
        -1.0 if lower_is_better(metric) else 1.0
    )  # the scorer is greater-is-better; the report is in the metric's units
    counts, blended = ensemble_selection({name: np.asarray(t.user_attrs[OOF]) for name, t in leaders.items()}, score)
    report = {
        "metric": metric,
        "cv": sign * blended,
        "families": {
            name: {"trial": t.number, "cv": t.value, "weight": counts.get(name, 0)} for name, t in leaders.items()
        },
    }
    if len(counts) < 2:
        return None, report
    members = [
        {
            "family": name,
            "weight": weight,
            "params": fast_caps(
                refit_config(winning_config(config, study, leaders[name]), leaders[name]), settings
            ).model.params,
        }
        for name, weight in counts.items()
    ]
    return with_model(config, ModelConfig(type="ensemble", params={"members": members})), report
