"""How tuning scales with workers on a shared study store: SQLite against the project's PostgreSQL service.

0. The machine's ceiling, measured. The same trials' training (the objective `tune` runs, single thread) in 1 and 2
   processes that share a counter of trials and no store (each its own in-memory study): what 2 workers could reach
   here if storing, tracking and starting processes cost nothing. Per-trial wall and CPU time, and the CPU time the
   hypervisor took (steal).
1. Parallel efficiency, measured. `ml-project tune` on the churn XGBoost config (careful mode) with K = 1 and K = 2
   single-thread workers (`model.params.n_jobs=1`) on the same trials (random sampler, no pruner: trial k is the same
   point whichever worker runs it), once with SQLite files (Optuna's study and MLflow's store) and once with the
   services `ml-project services start` runs (an Optuna study in PostgreSQL, MLflow's server on PostgreSQL).
   Efficiency = (trials/min with K workers) / (K x trials/min with one). The goal is >= 0.9 at K = 2.
2. The store's cost per trial, measured. Writer processes that do everything a trial does to the stores but train:
   ask (the sampler reads the study), the seven suggestions, the worker's label, a report and a pruning check after
   each of 5 folds, the refit's rounds, tell, the heartbeat, and (second set of columns) the trial's MLflow child
   run. 1, 2, 4, 8 and 16 writers at once, for a fixed time each, starting together once all have imported and
   opened the study.
3. Beyond this machine, simulated. With a trial's training time T and the store's time per trial W(c) when c
   workers use it at once, K workers spend T + W(c_K) per trial, where c_K = K W(1) / (T + W(1)) is how many are
   inside the store at a time on average; their rate is capped by the most trials per second the store served in
   part 2 (X_max). Efficiency(K) = min((T + W(1)) / (T + W(c_K)), X_max (T + W(1)) / K). W beyond 16 writers is
   the 16-writer figure scaled by c/16 (the store saturated), which is pessimistic for PostgreSQL on a real server:
   here the clients and the server share 2 cores.

Run: .venv/bin/python benchmarks/tuning_scaling.py [--trials 60] [--seconds 15] [--parts 0,1,2] [--repeats 3]
Takes about 25 minutes; PostgreSQL comes from `make postgres` (Debian's package).
"""

import argparse
import multiprocessing
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_budget import cli, project_copy

CONFIG = "churn_xgboost.yaml"
SAME_TRIALS = ["--set", "tuning.sampler=random", "--set", "tuning.pruner=none", "--set", "model.params.n_jobs=1"]
FOLDS = 5  # a trial reports its running CV score after each fold and asks the pruner (the configs' default)


def _trainer(params: list[dict], counter, barrier, out):
    "Part 0's worker: the objective's training for the trials `counter` hands out, on an in-memory study; puts (wall, CPU) per trial."
    import optuna

    from ml_project.config import load_config, with_model_params
    from ml_project.search.space import objective
    from ml_project.settings import get_settings
    from ml_project.split import load_splits

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = Path(os.environ["ML_PROJECT_ROOT"])
    config = load_config(root / "configs" / CONFIG)
    config = with_model_params(config, {**config.model.params, "n_jobs": 1})
    settings = get_settings(root)
    run = objective(config, settings, *load_splits(config, settings)["train"])
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())  # in memory: no store at all
    barrier.wait()
    times = []
    while True:
        with counter.get_lock():
            k, counter.value = counter.value, counter.value + 1
        if k >= len(params):
            break
        study.enqueue_trial(params[k])
        wall, cpu = time.perf_counter(), time.process_time()
        study.optimize(run, n_trials=1)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    out.put((times, time.perf_counter()))


def _cpu_ticks() -> np.ndarray:
    return np.array(
        Path("/proc/stat").read_text().splitlines()[0].split()[1:], dtype=float
    )  # user nice system idle iowait irq softirq steal ...


def ceiling(trials: int, repeat: int) -> list[dict]:
    "Part 0: trials per minute of the same trials' training in 1 and 2 processes with no store; odd repeats run 2 first."
    import optuna

    from ml_project.config import load_config
    from ml_project.search.space import suggest_params

    space = load_config(Path(os.environ["ML_PROJECT_ROOT"]) / "configs" / CONFIG).tuning.search_space
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(repeat))
    params = []
    for _ in range(trials):
        trial = sampler.ask()
        suggest_params(trial, space)
        params.append(trial.params)
        sampler.tell(trial, 0.0)
    context, rows = multiprocessing.get_context("spawn"), []
    for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
        counter, barrier, out = context.Value("i", 0), context.Barrier(workers + 1), context.Queue()
        processes = [context.Process(target=_trainer, args=(params, counter, barrier, out)) for _ in range(workers)]
        for p in processes:
            p.start()
        barrier.wait()  # every process has imported and loaded the data: only training is timed
        ticks, began = _cpu_ticks(), time.perf_counter()
        results = [out.get() for _ in processes]
        seconds, ticks = max(end for _, end in results) - began, _cpu_ticks() - ticks
        for p in processes:
            p.join()
        times = np.array([t for per_process, _ in results for t in per_process])
        rows.append(
            {
                "repeat": repeat,
                "workers": workers,
                "trials": len(times),
                "seconds": seconds,
                "trials_per_min": 60 * len(times) / seconds,
                "wall_per_trial_s": times[:, 0].mean(),
                "cpu_per_trial_s": times[:, 1].mean(),
                "steal_%": 100 * ticks[7] / ticks.sum(),
            }
        )
    return rows


def measured_efficiency(env: dict, storage: str, label: str, trials: int, repeat: int = 0) -> list[dict]:
    "Trials per minute of `tune` with 1 and 2 single-thread workers on the same trials, each on a new study; odd repeats run 2 first."
    rows = []
    for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
        name = f"scaling_{label}_{workers}_{repeat}"
        out, _ = cli(
            env,
            "tune",
            "-c",
            f"configs/{CONFIG}",
            "--trials",
            str(trials),
            "--workers",
            str(workers),
            "--storage",
            storage,
            "--no-refit",
            *SAME_TRIALS,
            "--set",
            f"experiment.name={name}",
        )
        added = re.search(r"this run added (\d+) .* in ([0-9.]+)s", out)
        count, seconds = int(added.group(1)), float(added.group(2))
        import optuna

        finished = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        first = {}  # each worker's first trial: how long the later workers took to start
        for t in finished:
            first[t.user_attrs["worker"]] = min(first.get(t.user_attrs["worker"], t.datetime_start), t.datetime_start)
        rows.append(
            {
                "store": label,
                "repeat": repeat,
                "workers": workers,
                "trials": count,
                "search_s": seconds,
                "trials_per_min": 60 * count / seconds,
                "trial_s": float(np.mean([t.duration.total_seconds() for t in finished if t.duration])),
                "late_start_s": (max(first.values()) - min(first.values())).total_seconds(),
            }
        )
    return rows


def _writer(
    storage: str, tracking_uri: str | None, parent_run_id: str | None, study: str, seconds: float, barrier, out
):
    "One writer: trials without training against the stores until `seconds` have passed; puts each trial's seconds on `out`."
    import optuna

    from ml_project.config import load_config
    from ml_project.search.space import REFIT_ROUNDS, _worker_id, suggest_params
    from ml_project.search.study import TrialLogger, make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_config(Path(os.environ["ML_PROJECT_ROOT"]) / "configs" / CONFIG).tuning.search_space
    study = optuna.load_study(
        study_name=study,
        storage=make_storage(storage),
        sampler=optuna.samplers.RandomSampler(os.getpid()),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=50),
    )
    logger = TrialLogger(tracking_uri, parent_run_id, "roc_auc") if parent_run_id else None
    rng, times, failed = np.random.default_rng(os.getpid()), [], 0

    def objective(trial):
        suggest_params(trial, space)
        trial.set_user_attr("worker", _worker_id())
        for fold in range(FOLDS):
            trial.report(float(rng.uniform(0.8, 0.85)), fold * 10_000 + 9_999)
            trial.should_prune()
        trial.set_user_attr(REFIT_ROUNDS, 500)  # the rounds the refit would train
        return float(rng.uniform(0.8, 0.85))

    barrier.wait()  # all writers begin together, once every one has imported and opened the study
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.perf_counter()
        try:
            study.optimize(objective, n_trials=1, callbacks=[logger] if logger else [], gc_after_trial=False)
            times.append(time.perf_counter() - began)
        except Exception:  # e.g. SQLite's "database is locked" past its timeout: counted, not hidden
            failed += 1
    out.put((times, failed))


def store_cost(
    storage: str, tracking_uri: str | None, label: str, seconds: float, levels=(1, 2, 4, 8, 16)
) -> list[dict]:
    "Per-trial store time and trials/s with 1..16 writers at once, without and with MLflow child runs."
    import optuna
    from mlflow.tracking import MlflowClient

    from ml_project.search.study import make_storage

    rows, context = [], multiprocessing.get_context("spawn")
    for with_mlflow in (False, True):
        parent = None
        if with_mlflow:
            client = MlflowClient(tracking_uri)
            experiment = client.get_experiment_by_name("scaling") or client.get_experiment(
                client.create_experiment("scaling")
            )
            parent = client.create_run(experiment.experiment_id, run_name=f"store cost {label}").info.run_id
        for writers in levels:
            name = f"cost_{label}_{writers}_{with_mlflow}"
            optuna.create_study(study_name=name, storage=make_storage(storage), direction="maximize")
            queue, barrier = context.Queue(), context.Barrier(writers)
            processes = [
                context.Process(target=_writer, args=(storage, tracking_uri, parent, name, seconds, barrier, queue))
                for _ in range(writers)
            ]
            for p in processes:
                p.start()
            results = [queue.get() for _ in processes]
            for p in processes:
                p.join()
            times = (
                np.concatenate([np.asarray(t, dtype=float) for t, _ in results])
                if any(t for t, _ in results)
                else np.array([np.nan])
            )
            rows.append(
                {
                    "store": label,
                    "mlflow": with_mlflow,
                    "writers": writers,
                    "trials": int(np.isfinite(times).sum()),
                    "failed": sum(f for _, f in results),
                    "median_ms": 1000 * np.nanmedian(times),
                    "p95_ms": 1000 * np.nanpercentile(times, 95),
                    "trials_per_s": np.isfinite(times).sum() / seconds,
                }
            )
    return rows


def simulate(train_s: float, cost: pd.DataFrame, ks=(2, 8, 32, 128)) -> dict:
    "Expected efficiency at K workers from a trial's training time and the store's time per trial W(c) (see the docstring)."
    levels, w = cost["writers"].to_numpy(float), cost["median_ms"].to_numpy(float) / 1000
    x_max = cost["trials_per_s"].max()

    def w_at(c):
        if c <= levels[-1]:
            return float(np.interp(np.log(max(c, 1)), np.log(levels), w))
        return w[-1] * c / levels[-1]  # past the measured range: saturated, time grows with the queue

    expected = {}
    for k in ks:
        inside = k * w[0] / (train_s + w[0])
        expected[k] = min((train_s + w[0]) / (train_s + w_at(inside)), x_max * (train_s + w[0]) / k)
    return expected


def main(trials: int, seconds: float, parts: set[int] = frozenset({0, 1, 2}), repeats: int = 3):
    from ml_project.search.services import services_for, start, stop
    from ml_project.settings import get_settings

    pd.set_option("display.width", 200)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no link per trial run from the writers
    with tempfile.TemporaryDirectory() as folder:
        env = project_copy(Path(folder))
        os.environ.update(env)
        cli(env, "data", "-c", f"configs/{CONFIG}")
        settings = get_settings(folder)
        import socket

        def free_port():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        services = start(services_for(settings, free_port(), free_port()))
        try:
            pg_env = {**env, "ML_PROJECT_MLFLOW_TRACKING_URI": services.tracking_uri}
            stores = {
                "sqlite": (env, f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db"),
                "postgresql": (pg_env, services.database_url("optuna"), services.tracking_uri),
            }
            speed, cost, bare = [], [], []
            for repeat in range(repeats if 0 in parts else 0):
                bare += ceiling(trials, repeat)
            for repeat in range(
                repeats if 1 in parts else 0
            ):  # interleaved: a slow spell of the machine hits both stores
                for label, (store_env, storage, tracking) in stores.items():
                    speed += measured_efficiency(store_env, storage, label, trials, repeat)
            for label, (store_env, storage, tracking) in stores.items():
                if 2 in parts:
                    cost += store_cost(storage, tracking, label, seconds)
        finally:
            stop(services)
    speed, cost, bare = pd.DataFrame(speed), pd.DataFrame(cost), pd.DataFrame(bare)
    if not bare.empty:
        print(
            f"0. the machine's ceiling: the same {trials} trials' training, single thread, in 1 and 2 processes, no store"
        )
        print(bare.round(3).to_string(index=False))
        pairs = [pair.set_index("workers") for _, pair in bare.groupby("repeat")]
        runs = [two.trials_per_min / (2 * one.trials_per_min) for one, two in ((p.loc[1], p.loc[2]) for p in pairs)]
        slower = [p.loc[2].wall_per_trial_s / p.loc[1].wall_per_trial_s for p in pairs]
        print(
            f"ceiling at K=2 = {np.median(runs):.3f}, median of {len(runs)} ({', '.join(f'{e:.3f}' for e in runs)}); "
            f"a trial took {np.median(slower):.3f}x as long with both cores training\n"
        )
    if speed.empty or cost.empty:
        print("(part 3 needs parts 1 and 2)")
    if not speed.empty:
        print(f"1. `ml-project tune`, churn XGBoost (careful), the same {trials} trials, single-thread workers")
    if not speed.empty:
        print(speed.round(2).to_string(index=False))
    efficiency = {}
    for label, group in speed.groupby("store", sort=False) if not speed.empty else []:
        runs = []
        for repeat, pair in group.groupby("repeat"):
            one, two = pair.set_index("workers").loc[1], pair.set_index("workers").loc[2]
            runs.append(
                {
                    "efficiency": two.trials_per_min / (2 * one.trials_per_min),
                    "slower": two.trial_s / one.trial_s,
                    "late": two.late_start_s,
                    "without_late": two.trials * 60 / (two.search_s - two.late_start_s / 2) / (2 * one.trials_per_min),
                }
            )
        runs = pd.DataFrame(runs)
        efficiency[label] = runs.efficiency.median()
        print(
            f"{label}: efficiency at K=2 = {efficiency[label]:.3f}, median of {len(runs)} ({', '.join(f'{e:.3f}' for e in runs.efficiency)}; "
            f"goal >= 0.9). A trial took {runs.slower.median():.2f}x as long with 2 workers (the cores are shared with the stores' "
            f"servers), and the second worker's first trial began {runs.late.median():.1f} s after the first's (a new process imports "
            f"and loads the data once): without that start, {runs.without_late.median():.3f}"
        )
    if cost.empty:
        return
    print(
        f"\n2. the stores' time per trial without training ({seconds:g} s per row; 2 cores shared by writers and server)"
    )
    print(cost.round(1).to_string(index=False))
    if speed.empty:
        return
    print(
        "\n3. expected efficiency with more workers on one store (T: a trial's training time, single thread, from part 1)"
    )
    table = []
    for label, group in speed.groupby("store", sort=False):
        one = group[group["workers"] == 1]
        for with_mlflow in (False, True):
            c = cost[(cost["store"] == label) & (cost["mlflow"] == with_mlflow)]
            train_s = one["search_s"].sum() / one["trials"].sum() - c["median_ms"].iloc[0] / 1000
            row = {
                "store": label,
                "mlflow": with_mlflow,
                "T_s": train_s,
                "W1_ms": c["median_ms"].iloc[0],
                "max_trials_per_s": c["trials_per_s"].max(),
            }
            row.update({f"K={k}": v for k, v in simulate(train_s, c).items()})
            table.append(row)
    print(pd.DataFrame(table).round(3).to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="trials per tune run in part 1")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per writer count in part 2")
    parser.add_argument("--parts", default="0,1,2", help="which parts to measure (part 3 needs 1 and 2)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="pairs of part-1 runs per store, interleaved; the median is reported"
    )
    args = parser.parse_args()
    main(args.trials, args.seconds, {int(p) for p in args.parts.split(",")}, args.repeats)
