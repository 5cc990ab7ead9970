"""Tuning: search spaces from config, direction from the metric, a study that resumes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import finish
from optuna.trial import TrialState

from ml_project.config import load_config
from ml_project.errors import ConfigError
from ml_project.search.space import TRIAL_GATE
from ml_project.search.study import open_study
from ml_project.search.tune import tune


def test_regression_study_minimises_and_resumes(project, tmp_path):
    config = load_config(project.configs_dir / "ames_xgboost.yaml", ["model.params.n_estimators=200"])
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune(config, project, n_trials=2, storage=storage, refit=False).study
    assert first.direction == optuna.study.StudyDirection.MINIMIZE  # rmsle: lower is better
    assert all(0 < t.value < 1 for t in first.trials if t.state == optuna.trial.TrialState.COMPLETE)
    again = tune(config, project, n_trials=1, storage=storage, refit=False).study
    assert len(again.trials) == 3 and again.study_name == "ames_xgboost__fast"
    assert set(again.best_params) == set(config.tuning.search_space)


def test_search_space_errors_name_the_key(project, tmp_path):
    path = tmp_path / "bad.yaml"
    text = (project.configs_dir / "churn_xgboost.yaml").read_text()
    path.write_text(
        text.replace("max_depth: {type: int, low: 4, high: 20}", "max_depth: {type: int, low: 20, high: 4}")
    )
    with pytest.raises(ConfigError, match="tuning.search_space.max_depth"):
        load_config(path)
    path.write_text(text.replace("sampler: tpe", "sampler: cmaes"))
    with pytest.raises(ConfigError, match="tuning.sampler"):
        load_config(path)


def test_sampler_is_seeded(project, tmp_path):
    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    draws = []
    for name in ("a", "b"):
        study = open_study(config, project, f"sqlite:///{tmp_path / name}.db")
        draws.append(study.ask().suggest_float("x", 0, 1))
    assert draws[0] == draws[1]


# --- the command, workers sharing one study, and interruptions (each runs `ml-project tune` as a user would) ---


CLI = [str(Path(sys.executable).parent / "ml-project"), "tune", "-c", "configs/churn_xgboost.yaml"]


def _start(project, *args, env: dict | None = None, cpu: int | None = None):
    "Start `ml-project tune` with `args`; `cpu` pins it to that core, as if it were alone on a machine of one."
    pin = (lambda: os.sched_setaffinity(0, {cpu % os.cpu_count()})) if cpu is not None else None
    return subprocess.Popen(
        [*CLI, *args],
        cwd=project.root,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=pin,  # noqa: PLW1509 (only sets the CPU affinity, before the child has threads)
    )


def _trials(storage):
    return optuna.load_study(study_name="churn_xgboost__fast", storage=storage).get_trials(deepcopy=False)


def _wait_for(storage, state, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(t.state == state for t in _trials(storage)):
                return
        except KeyError:
            pass  # the study is not created yet
        time.sleep(0.3)
    raise AssertionError(f"no {state.name} trial within {timeout}s")


def test_two_commands_share_one_study(project, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    # Two machines sharing a study, each on its own core: unpinned, both would start every core's threads on 2 cores.
    runs = [_start(project, "--trials", "3", "--storage", storage, "--no-refit", cpu=i) for i in range(2)]
    outputs = finish(*runs)
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output
        assert "this run added 3 " in output, output  # its own trials, not the other command's
    trials = _trials(storage)
    assert len(trials) == 6 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials of the one study
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # and no point was tried twice


def test_workers_draw_from_one_count_of_trials(project, tmp_path):
    # K workers take trials one at a time from a shared count, so no worker idles while another still has a queue of
    # its own; still exactly N are added (a worker that starts late may find none left).
    storage = f"sqlite:///{tmp_path / 'count.db'}"
    run = _start(project, "--trials", "5", "--workers", "2", "--storage", storage, "--no-refit")
    (output,) = finish(run)
    assert run.returncode == 0, output
    assert "this run added 5 " in output
    trials = _trials(storage)
    assert len(trials) == 5 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


@pytest.mark.parametrize("how, workers", [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGKILL, 1)])
def test_interrupted_tuning_keeps_finished_trials_and_resumes(project, tmp_path, how, workers):
    # The gate holds every trial after the first, so the signal always lands on a RUNNING trial with one finished before it.
    storage, gate = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "gate"
    gate.touch()
    run = _start(
        project,
        "--timeout",
        "300",
        "--storage",
        storage,
        "--no-refit",
        "--workers",
        str(workers),
        env={TRIAL_GATE: str(gate)},
    )
    _wait_for(storage, TrialState.COMPLETE)
    _wait_for(storage, TrialState.RUNNING)
    run.send_signal(how)
    try:
        output = run.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        run.kill()
        raise AssertionError("the command did not stop within 120 s of the signal:\n" + run.communicate()[0])
    assert run.returncode != 0
    before = _trials(storage)
    finished = [t.number for t in before if t.state == TrialState.COMPLETE]
    assert finished == [0]
    if how == signal.SIGTERM:  # the command stops its workers, and each marks its own trial failed on the way out
        assert "interrupted" in output and not [t for t in before if t.state == TrialState.RUNNING]
    else:  # kill -9 leaves it RUNNING, until the next command finds its process gone
        assert [t for t in before if t.state == TrialState.RUNNING]
    gate.unlink()
    again = subprocess.run(
        [*CLI, "--trials", "1", "--storage", storage, "--no-refit"],
        cwd=project.root,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    after = _trials(storage)
    assert len(after) == len(before) + 1
    assert [t.number for t in after if t.state == TrialState.COMPLETE][: len(finished)] == finished
    assert not [t for t in after if t.state == TrialState.RUNNING]
    if how == signal.SIGKILL:
        assert "marked failed" in again.stdout + again.stderr
    import mlflow

    mlflow.set_tracking_uri(project.mlflow_tracking_uri)
    parents = mlflow.search_runs(
        experiment_names=["churn"], filter_string="tags.kind = 'tuning'", order_by=["attributes.start_time ASC"]
    )
    # the interrupted search's parent run: KILLED on SIGTERM; after kill -9, closed as FAILED by the next command
    assert (
        parents.loc[0, "status"] == ("KILLED" if how == signal.SIGTERM else "FAILED")
        and parents.loc[1, "status"] == "FINISHED"
    )


def test_workers_stop_when_the_command_is_killed(project, tmp_path):
    # kill -9 of the command: its workers go too (before, an orphaned worker used up the whole trial budget on its own).
    import psutil

    storage, gate = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "gate"
    gate.touch()
    run = _start(
        project, "--trials", "20", "--storage", storage, "--no-refit", "--workers", "2", env={TRIAL_GATE: str(gate)}
    )
    _wait_for(storage, TrialState.RUNNING)
    workers = [
        p
        for p in psutil.Process(run.pid).children(recursive=True)
        if "python" in p.name().lower() or "ml-project" in " ".join(p.cmdline())
    ]
    assert workers, "no worker process found"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    run.stdout.close()  # the workers hold the pipe too: do not wait for its end
    gate.unlink()  # a worker still alive would now run the remaining trials
    _gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers {[p.pid for p in alive]} outlived the command"
    assert len(_trials(storage)) < 20, [(t.number, t.state.name, t.user_attrs.get("worker")) for t in _trials(storage)]


def test_a_refit_that_is_not_promoted_leaves_the_trained_model_in_place(project, tmp_path):
    from ml_project.train.experiment import run_experiment

    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    trained = run_experiment(config, project)
    before = (trained.model_dir / "metadata.json").read_text()
    result = tune(config, project, n_trials=1, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert result.refit.model_dir == project.models_dir / "tuned" / "churn_xgboost__fast"
    assert (trained.model_dir / "metadata.json").read_text() == before  # train's model, untouched
    assert (result.refit.model_dir / "model.joblib").is_file()


def test_the_refit_trains_the_rounds_its_folds_found_on_every_row(project, tmp_path):
    from ml_project.search.space import REFIT_ROUNDS, fitted_rounds
    from ml_project.search.tune import tuned_dir
    from ml_project.train.files import load_model

    config = load_config(project.configs_dir / "ames_xgboost.yaml", ["model.params.n_estimators=300"])
    result = tune(config, project, n_trials=1, storage=f"sqlite:///{tmp_path / 'study.db'}")
    rounds = result.study.best_trial.user_attrs[REFIT_ROUNDS]
    assert 1 <= rounds  # the folds' mean, scaled up to the refit's rows
    model, _ = load_model(tuned_dir(config, project), project)
    booster = model[-1].regressor_  # under the log-target transform
    assert booster.n_estimators == rounds and booster.get_booster().num_boosted_rounds() == rounds
    assert fitted_rounds(model) is None  # no early stopping: every training row is fitted, none held out
    from ml_project.search.tune import tune_summary

    said = "\n".join(tune_summary(result, config, project))  # the two CV scores, each named, and why they differ
    assert f"the trial's {result.study.best_value:.4f}" in said and f"the {rounds} rounds they found" in said


def test_journal_storage(project, tmp_path):
    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    result = tune(config, project, n_trials=2, storage=f"journal:{tmp_path / 'study.log'}", refit=False)
    assert (tmp_path / "study.log").is_file() and len(result.trials) == 2
    assert len(tune(config, project, n_trials=1, storage=f"journal:{tmp_path / 'study.log'}", refit=False).trials) == 3


class _PruneAfter(optuna.pruners.BasePruner):
    "Prune once a trial has reported past `step`."

    def __init__(self, step):
        self.step = step

    def prune(self, study, trial):
        return trial.last_step is not None and trial.last_step >= self.step


def _objective(project, config):
    "The tuning objective on the config's training split."
    from ml_project.search.space import objective
    from ml_project.split import load_splits

    return objective(config, project, *load_splits(config, project)["train"])


@pytest.mark.parametrize("name, first", [("churn_xgboost.yaml", 10), ("churn_mlp.yaml", 1)])
def test_boosting_rounds_and_epochs_report_and_prune_inside_a_fold(project, name, first):
    # XGBoost reports after 10, 20, 40, ... rounds and the MLP after 1, 2, 4, ... epochs, at fold * ROUND_STEP + round,
    # so a pruner can stop a trial mid-fold.
    from ml_project.search.space import ROUND_STEP

    run = _objective(project, load_config(project.configs_dir / name, ["tuning.prune_within_folds=true"]))
    free = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    free.optimize(run, n_trials=1)
    steps = sorted(free.trials[0].intermediate_values)
    within_first_fold = [s for s in steps if s < ROUND_STEP - 1]
    assert len(within_first_fold) >= 2 and within_first_fold == [first * 2**k for k in range(len(within_first_fold))]
    assert ROUND_STEP - 1 in steps and 2 * ROUND_STEP - 1 in steps  # and each fold's CV score at its last step
    assert all(
        v < 0 for s, v in free.trials[0].intermediate_values.items() if s % ROUND_STEP != ROUND_STEP - 1
    )  # -loss: higher is better
    pruned = optuna.create_study(direction="maximize", pruner=_PruneAfter(first))
    pruned.optimize(run, n_trials=1)
    assert pruned.trials[0].state == optuna.trial.TrialState.PRUNED
    assert pruned.trials[0].last_step < ROUND_STEP  # stopped inside the first fold


def test_by_default_trials_report_only_their_fold_scores(project):
    # Round-level pruning is opt-in (it favours fast learning rates); by default a trial reports once per fold.
    from ml_project.search.space import ROUND_STEP
    from ml_project.split import cv_folds

    config = load_config(project.configs_dir / "churn_xgboost.yaml")
    assert not config.tuning.prune_within_folds
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(_objective(project, config), n_trials=1)
    assert sorted(study.trials[0].intermediate_values) == [
        k * ROUND_STEP + ROUND_STEP - 1 for k in range(cv_folds(config, project))
    ]
