"""Tuning at equal wall-clock budgets: `ml-project tune` against XGBoost defaults, the seed RF and FLAML AutoML.

For churn (test ROC-AUC) and Ames (test RMSE of log price) on the configs' fixed, seeded splits (careful mode):
- `ml-project tune` on the XGBoost config with `--timeout <budget>` and 2 workers (the search; the refit of the
  best parameters on the training split follows and is timed apart), run as a user would in a throwaway
  project root, so the benchmark never touches your MLflow database, registry or models/;
- XGBoost with its default parameters, in our pipeline (same features);
- the seed RandomForest config (churn) / the RandomForest config (Ames), as shipped;
- FLAML AutoML (`time_budget=<budget>`, the same raw training rows, its own preprocessing), in its own virtual
  environment under `benchmarks/.flaml-venv` (FLAML's `automl` extra pins xgboost below 3, ours is 3);
- trials per minute of `ml-project tune` with 1 and with 2 workers over the first budget: once with the config's
  sampler and pruner (each run draws and prunes different trials, so this mixes search and speed), once on the same
  trials (random sampler, no pruner: trial k is the same point whichever worker runs it), which isolates the workers.

Run: .venv/bin/python benchmarks/tuning_budget.py [--budgets 60,300] [--problems churn,ames] [--no-flaml]
Takes about 2 x (sum of budgets) per problem, plus FLAML's one-time install.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = {
    "churn": {"tune": "churn_xgboost.yaml", "baseline": "experiment_001.yaml", "metric": "auc"},
    "ames": {"tune": "ames_xgboost.yaml", "baseline": "ames_random_forest.yaml", "metric": "rmsle"},
}
FLAML_VENV = ROOT / "benchmarks" / ".flaml-venv"
FLAML_SCRIPT = r"""
import sys, json, numpy as np, pandas as pd
from flaml import AutoML
folder, task, budget, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
train, test = pd.read_csv(f"{folder}/train.csv"), pd.read_csv(f"{folder}/test.csv")
y_train, y_test = train.pop("__target__"), test.pop("__target__")
automl = AutoML()
if task == "classification":
    automl.fit(train, y_train, task="classification", metric="roc_auc", time_budget=budget, seed=seed, verbose=0)
    from sklearn.metrics import roc_auc_score
    score = roc_auc_score(y_test, automl.predict_proba(test)[:, 1])
else:  # the log price, as our configs
    automl.fit(train, np.log1p(y_train), task="regression", metric="rmse", time_budget=budget, seed=seed, verbose=0)
    score = float(np.sqrt(np.mean((automl.predict(test) - np.log1p(y_test)) ** 2)))
print(json.dumps({"score": float(score), "best_estimator": automl.best_estimator}))
"""


def project_copy(folder: Path) -> dict:
    "A throwaway project root (settings, configs, raw data), and the environment that selects it."
    for name in ["settings.ini"]:
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "configs", folder / "configs")
    (folder / "data" / "raw").mkdir(parents=True)
    for f in (ROOT / "data" / "raw").glob("*.csv*"):
        shutil.copy(f, folder / "data" / "raw" / f.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")}
    return {**env, "ML_PROJECT_ROOT": str(folder), "ML_PROJECT_MODE": "careful"}


def cli(env, *args) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ml-project"), *args],
        env=env,
        cwd=env["ML_PROJECT_ROOT"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"ml-project {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout, time.perf_counter() - started


def tune(
    env,
    config: str,
    budget: float | None,
    workers: int,
    metric: str,
    refit: bool = True,
    trials: int | None = None,
    same_trials: bool = False,
) -> dict:
    "`ml-project tune` on a new study; `same_trials`: random sampler, no pruner, so trial k is the same work for any worker count."
    tag = f"{config}-{budget}-{trials}-{workers}-{refit}-{same_trials}"
    storage = f"sqlite:///{env['ML_PROJECT_ROOT']}/bench-{tag}.db"  # a new study each time
    budget_args = [*(["--timeout", str(budget)] if budget else []), *(["--trials", str(trials)] if trials else [])]
    fixed = ["--set", "tuning.sampler=random", "--set", "tuning.pruner=none"] if same_trials else []
    out, seconds = cli(
        env,
        "tune",
        "-c",
        f"configs/{config}",
        *budget_args,
        "--workers",
        str(workers),
        "--storage",
        storage,
        *([] if refit else ["--no-refit"]),
        *fixed,
    )
    added = re.search(r"this run added (\d+) .* in ([0-9.]+)s", out)
    trials, search = int(added.group(1)), float(added.group(2))
    test = re.search(rf"refit: test {metric} ([0-9.]+)", out)
    return {"score": float(test.group(1)) if test else np.nan, "trials": trials, "search_s": search, "total_s": seconds}


def train_score(env, config: str, metric: str, sets=()) -> tuple[float, float]:
    out, seconds = cli(env, "train", "-c", f"configs/{config}", *[a for s in sets for a in ("--set", s)])
    line = next(line for line in out.splitlines() if line.split() and line.split()[0] == metric)
    return float(line.split()[-1]), seconds  # the metrics table's last column is the test split


def flaml_python() -> str:
    "FLAML's interpreter, in its own environment under benchmarks/, created on first use."
    if not (FLAML_VENV / "bin" / "python").exists():
        print("installing FLAML in its own environment (once) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(FLAML_VENV)], check=True)
        subprocess.run([str(FLAML_VENV / "bin" / "pip"), "install", "-q", "flaml[automl]"], check=True)
    return str(FLAML_VENV / "bin" / "python")


def flaml(env, config: str, budget: float, seed: int) -> dict:
    flaml_python()
    sys.path.insert(0, str(ROOT))
    os.environ.update(env)
    from ml_project.config import load_config
    from ml_project.settings import get_settings
    from ml_project.split import load_splits

    settings = get_settings()
    cfg = load_config(settings.configs_dir / config)
    splits = load_splits(cfg, settings)
    with tempfile.TemporaryDirectory() as folder:
        for name in ("train", "test"):
            frame, target = splits[name]  # the target encoded: 1 is the positive class
            frame.assign(__target__=target.to_numpy()).to_csv(
                f"{folder}/{name}.csv", index=False
            )  # plain text: no pyarrow there
        started = time.perf_counter()
        done = subprocess.run(
            [str(FLAML_VENV / "bin" / "python"), "-c", FLAML_SCRIPT, folder, cfg.data.task, str(budget), str(seed)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"FLAML failed:\n{done.stderr[-3000:]}")
        import json

        return {**json.loads(done.stdout.strip().splitlines()[-1]), "total_s": time.perf_counter() - started}


def main(budgets: list[float], problems: list[str], with_flaml: bool):
    rows, speed = [], []
    for problem in problems:
        spec = PROBLEMS[problem]
        with tempfile.TemporaryDirectory() as folder:
            env = project_copy(Path(folder))
            cli(env, "data", "-c", f"configs/{spec['tune']}")
            default, seconds = train_score(
                env, spec["tune"], spec["metric"], ["model.params={}"]
            )  # XGBoost's own defaults (no early stopping)
            rows.append(
                {
                    "problem": problem,
                    "method": "XGBoost defaults",
                    "budget_s": None,
                    "test": default,
                    "seconds": seconds,
                }
            )
            seed, seconds = train_score(env, spec["baseline"], spec["metric"])
            rows.append(
                {
                    "problem": problem,
                    "method": f"shipped {spec['baseline']}",
                    "budget_s": None,
                    "test": seed,
                    "seconds": seconds,
                }
            )
            for budget in budgets:
                result = tune(env, spec["tune"], budget, 2, spec["metric"])
                rows.append(
                    {
                        "problem": problem,
                        "method": "ml-project tune (2 workers)",
                        "budget_s": budget,
                        "test": result["score"],
                        "seconds": result["total_s"],
                        "trials": result["trials"],
                    }
                )
                if with_flaml:
                    result = flaml(env, spec["tune"], budget, 42)
                    rows.append(
                        {
                            "problem": problem,
                            "method": f"FLAML ({result['best_estimator']})",
                            "budget_s": budget,
                            "test": result["score"],
                            "seconds": result["total_s"],
                        }
                    )
            # The config's own sampler and pruner (each run draws and prunes different trials), then the same trials
            # (as many as 1 worker does in the budget), so that only the workers differ.
            for kind, same_trials in (
                ("config's sampler and pruner", False),
                ("the same trials (random, no pruning)", True),
            ):
                count = None
                for workers in (1, 2):
                    result = tune(
                        env,
                        spec["tune"],
                        None if count else budgets[0],
                        workers,
                        spec["metric"],
                        refit=False,
                        trials=count,
                        same_trials=same_trials,
                    )
                    if same_trials:
                        count = count or result["trials"]
                    speed.append(
                        {
                            "problem": problem,
                            "trials": kind,
                            "workers": workers,
                            "count": result["trials"],
                            "search_s": result["search_s"],
                            "trials_per_min": 60 * result["trials"] / result["search_s"],
                        }
                    )
    pd.set_option("display.width", 200)
    table = pd.DataFrame(rows)
    print("test score on the fixed split (churn: ROC-AUC, higher is better; ames: RMSE of log price, lower is better)")
    print(table.round(4).to_string(index=False), end="\n\n")
    speed = pd.DataFrame(speed)
    print(f"trials per minute of `ml-project tune`, {budgets[0]:g} s search")
    print(speed.round(2).to_string(index=False))
    for (problem, trials), group in speed.groupby(["problem", "trials"], sort=False):
        rate = group.set_index("workers")["trials_per_min"]
        print(f"{problem}, {trials}: 2 workers / 1 worker = {rate[2] / rate[1]:.2f}x (goal >= 1.7x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,300", help="search budgets in seconds, comma-separated")
    parser.add_argument("--problems", default="churn,ames")
    parser.add_argument("--no-flaml", action="store_true", help="skip FLAML (no install)")
    args = parser.parse_args()
    main([float(b) for b in args.budgets.split(",")], args.problems.split(","), not args.no_flaml)
