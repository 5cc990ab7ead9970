"""A cross-family search's best trials blended: greedy ensemble selection on their out-of-fold predictions, refitted as one voting model.

Hand-written (not exported from a notebook): machinery behind `tuning.ensemble`, shown in the search notebook and tested in
`tests/test_ensemble.py`.

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

from typing import Callable

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline

from .config import ExperimentConfig, ModelConfig, Settings, lower_is_better, with_model
from .evaluation import positive_scores

OOF = "oof_predictions"  # the trial's user attribute: its out-of-fold predictions, kept while it leads its family
ROUNDS = 25  # ensemble selection's additions (auto-sklearn uses 50 from many more candidates; a few families need fewer)


def fold_predictions(model,  # a fitted pipeline
                     X: pd.DataFrame,  # the fold's held-out rows
                     classification: bool,  # probabilities (the positive class's for two classes) or values
                    ) -> np.ndarray:
    "What a blend averages: class probabilities (two classes: the positive one's, as the evaluation scores them) or predicted values."
    return positive_scores(model, X) if classification else np.asarray(model.predict(X), dtype=float)


def keep_if_leading(trial: optuna.Trial,  # the trial that has just scored
                    predictions: np.ndarray,  # its out-of-fold predictions, in the training split's row order
                    value: float,  # its CV score
                    maximise: bool,  # whether a higher score is better
                   ):
    "Store `predictions` on `trial` when no finished trial of its family scored better: the family's best always has them."
    family = trial.params.get("family")
    rivals = [t.value for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params.get("family") == family]
    if rivals and (value < max(rivals) if maximise else value > min(rivals)): return
    trial.set_user_attr(OOF, np.round(predictions, 6).tolist())  # six digits: ample for a score, a third of the storage


class GivenPredictions(BaseEstimator):
    "An 'estimator' whose predictions for rows `X` (positions) are given: lets a scikit-learn scorer score a blend."
    def __init__(self, predictions: np.ndarray): self.predictions = predictions
    def fit(self, X=None, y=None): return self
    def _rows(self, X): return np.asarray(X, dtype=int).ravel()

class _GivenProbabilities(ClassifierMixin, GivenPredictions):
    @property
    def classes_(self): return np.arange(2 if self.predictions.ndim == 1 else self.predictions.shape[1])
    def predict_proba(self, X):
        p = self.predictions[self._rows(X)]
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p
    def predict(self, X): return self.classes_[self.predict_proba(X).argmax(axis=1)]

class _GivenValues(RegressorMixin, GivenPredictions):
    def predict(self, X): return self.predictions[self._rows(X)]


def blend_scorer(metric: str,  # the scikit-learn scorer's name (`scorers` maps a config's metric to it)
                 y: pd.Series | np.ndarray,  # the encoded target of the rows predicted
                 classification: bool,  # probabilities or values
                ) -> Callable[[np.ndarray], float]:
    "A function of out-of-fold predictions → their score, greater is better (scikit-learn's sign)."
    scorer, rows, y = get_scorer(metric), np.arange(len(y)), np.asarray(y)
    given = _GivenProbabilities if classification else _GivenValues
    return lambda predictions: float(scorer(given(predictions), rows, y))


def ensemble_selection(predictions: dict[str, np.ndarray],  # each candidate's out-of-fold predictions
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
        if scored[pick] > best[0]: best = (scored[pick], {name: c for name, c in counts.items() if c})
    return best[1], best[0]


def family_leaders(study: optuna.Study,  # a cross-family study with `tuning.ensemble`
                  ) -> dict[str, optuna.trial.FrozenTrial]:
    "Each family's best finished trial that kept its out-of-fold predictions."
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    leaders = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        family = t.params.get("family")
        if OOF in t.user_attrs and (family not in leaders or sign * t.value > sign * leaders[family].value): leaders[family] = t
    return leaders


def ensemble_config(config: ExperimentConfig,  # the search config (`tuning.ensemble: true`)
                    settings: Settings,  # mode (the network's epoch cap) and seed
                    study: optuna.Study,  # its study
                    y: pd.Series,  # the training split's encoded target, the rows the predictions are of
                   ) -> tuple[ExperimentConfig | None, dict]:
    """The blend to refit, as a config of model type `ensemble` (None when one family alone scores best), and a report:
    each family's weight, trial and CV score, and the blend's CV score from the kept predictions."""
    from .search import winning_config
    from .training import fast_caps, scorers
    from .tuning import refit_config, tuning_metric
    leaders = family_leaders(study)
    if len(leaders) < 2: return None, {"families": {name: {"trial": t.number, "cv": t.value} for name, t in leaders.items()}}
    metric = tuning_metric(config)
    score = blend_scorer(scorers([metric], config.data.task, y.nunique())[metric], y, config.data.task == "classification")
    sign = -1.0 if lower_is_better(metric) else 1.0  # the scorer is greater-is-better; the report is in the metric's units
    counts, blended = ensemble_selection({name: np.asarray(t.user_attrs[OOF]) for name, t in leaders.items()}, score)
    report = {"metric": metric, "cv": sign * blended,
              "families": {name: {"trial": t.number, "cv": t.value, "weight": counts.get(name, 0)} for name, t in leaders.items()}}
    if len(counts) < 2: return None, report
    members = [{"family": name, "weight": weight,
                "params": fast_caps(refit_config(winning_config(config, study, leaders[name]), leaders[name]), settings).model.params}
               for name, weight in counts.items()]
    return with_model(config, ModelConfig(type="ensemble", params={"members": members})), report


def _members(config: ExperimentConfig) -> list[tuple[str, float, ExperimentConfig]]:
    "Each member's family, weight and config with its parameters; a `ValueError` naming what is wrong."
    from .config import ConfigError, with_model_params
    from .search import family_configs
    members = config.model.params.get("members")
    if set(config.model.params) != {"members"} or not isinstance(members, list) or not members:
        raise ValueError("model.params of an ensemble is {members: [{family, weight, params}, ...]}, one entry per family blended")
    try: families = family_configs(config)
    except ConfigError as error: raise ValueError(str(error)) from None
    found = []
    for k, member in enumerate(members):
        if not isinstance(member, dict) or set(member) - {"family", "weight", "params"} or "family" not in member:
            raise ValueError(f"model.params.members[{k}]: give family, weight and params (got {member!r})")
        if member["family"] not in families:
            raise ValueError(f"model.params.members[{k}].family {member['family']!r} is not one of tuning.families: {list(families)}")
        weight = member.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ValueError(f"model.params.members[{k}].weight must be a positive number, got {weight!r}")
        family = families[member["family"]]
        found.append((member["family"], float(weight), with_model_params(family, member.get("params", family.model.params))))
    return found


def ensemble_pipeline(config: ExperimentConfig,  # model type `ensemble`, its families listed in `tuning.families`
                      seed: int = 42,  # for every member
                     ) -> Pipeline:
    "The members' pipelines (each raw rows → prediction) averaged with their weights, as a one-step pipeline."
    from .models import build_pipeline
    members = _members(config)
    pipelines = [(name, build_pipeline(member, seed)) for name, _, member in members]
    weights = [weight for _, weight, _ in members]
    vote = (VotingClassifier(pipelines, voting="soft", weights=weights) if config.data.task == "classification"
            else VotingRegressor(pipelines, weights=weights))
    return Pipeline([("model", vote)])


def check_ensemble(config: ExperimentConfig,  # model type `ensemble`
                   settings: Settings,  # where the data and schemas are
                  ) -> list[str]:
    "Every problem of an ensemble config: its members' shape, then each member's config problems, named by family."
    from .models import check_config
    try: members = _members(config)
    except ValueError as error: return [str(error)]
    return [f"ensemble member {name}: {problem}" for name, _, member in members for problem in check_config(member, settings)]


def out_of_fold(predictions: dict[int, np.ndarray],  # each fold's predictions of its held-out rows
                splits: list[tuple[np.ndarray, np.ndarray]],  # the folds' (training, held-out) row positions
               ) -> np.ndarray:
    "The folds' predictions put back in the training split's row order: one prediction per row, from the fold that held it out."
    first = next(iter(predictions.values()))
    out = np.empty((sum(len(held) for _, held in splits), *first.shape[1:]))
    for fold, (_, held) in enumerate(splits): out[held] = predictions[fold]
    return out
