"""Training on a Dask cluster beside training in one process: peak memory per million rows, time per boosting round.

The churn data resampled to `--sizes` million rows (not committed: made here, as Parquet files of `--file-rows` rows
each, with new unique ids), the churn XGBoost config with `--rounds` boosting rounds, 2-fold CV and learning rate 0.1
(the same work on both paths: 2 CV fits and the final fit). Measured, in this run, each in a fresh process:

- in one process: what `ml-project train` holds (the table read and validated, the stratified split, the CV folds and
  the final fit of the pipeline; not its evaluation report, which only adds to it), its peak RSS;
- on the cluster: `ml-project train --cluster --input <folder>` against a cluster this project starts
  (`ml-project services start --dask 2`, one thread per worker, restarted for each size so peaks are fresh): the sum
  of the workers' peak RSS plus the client's;
- per million rows (peak / rows) and marginal (the slope between the smallest and the largest size: what each more
  million rows costs, without the processes' fixed start-up memory); goal: the cluster path <= 1/3 of the in-process
  path's memory per row;
- time per boosting round (the final fit's seconds / rounds, the matrix's construction included);
- `--big` million rows on the cluster only (goal: >= 20 M on this 24 GB machine), then `ml-project predict --cluster`
  of the same rows with the model it registered, and `ModelPredictor` serving that model.

Run: .venv/bin/python benchmarks/cluster_training.py [--sizes 1,5,10] [--big 20] [--rounds 50]
Takes about 25 minutes with the defaults; `--sizes 0.1,0.2 --big 0.4 --file-rows 50000` is a 3-minute check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import _free_port
from tuning_budget import cli, project_copy

CONFIG = "configs/churn_xgboost.yaml"


def _settings_args(rounds: int) -> list[str]:
    return ["--set", f"model.params.n_estimators={rounds}", "--set", "model.params.learning_rate=0.1",
            "--set", "training.cv_folds=2"]  # fmt: skip


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _data(settings, millions: list[float], file_rows: int, folder: Path) -> dict[float, Path]:
    "Churn resampled: Parquet files of `file_rows` rows (unique ids), and for each size a folder of the first ones."
    from ml_project.config import load_config
    from ml_project.data import load_dataset

    frame = load_dataset(load_config(settings.configs_dir / "churn_xgboost.yaml"), settings).frame
    files = max(round(m * 1e6 / file_rows) for m in millions)
    (folder / "all").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        part = frame.iloc[rng.integers(0, len(frame), file_rows)].reset_index(drop=True)
        part["rownames"] = np.arange(i * file_rows + 1, (i + 1) * file_rows + 1)
        part.to_parquet(folder / "all" / f"part{i:04d}.parquet", index=False)
    sizes = {}
    for m in millions:
        sizes[m] = folder / f"{m}M"
        sizes[m].mkdir()
        for i in range(round(m * 1e6 / file_rows)):
            os.link(folder / "all" / f"part{i:04d}.parquet", sizes[m] / f"part{i:04d}.parquet")
    return sizes


def in_process(data: str, rounds: int) -> dict:
    "What `ml-project train` holds in one process, on the Parquet folder `data` (run in a fresh process)."
    import pandas as pd

    from ml_project.config import load_config, with_model_params
    from ml_project.data import fill_explicit, validate
    from ml_project.schema import load_schema
    from ml_project.settings import get_settings
    from ml_project.split import features_and_target, split_data, stratify_on, target_classes
    from ml_project.train.training import cross_validate_model, train_model

    settings = get_settings()
    config = load_config(settings.configs_dir / "churn_xgboost.yaml")
    config = with_model_params(config, {**config.model.params, "n_estimators": rounds, "learning_rate": 0.1})
    config = config.model_copy(update={"training": config.training.model_copy(update={"cv_folds": 2})})
    frame = pd.read_parquet(data)
    frame = validate(frame, load_schema(config.data.schema_path, settings.root), config.data.target, data)
    frame = fill_explicit(frame, config.data.fill_missing)
    tables = split_data(frame, config.split, stratify_on(config), seed=settings.seed)
    classes = target_classes(frame[config.data.target], config)
    X, y = features_and_target(tables["train"], config, classes)
    cross_validate_model(config, X, y, settings)
    started = time.perf_counter()
    model = train_model(X, y, config, settings)
    return {
        "peak": _peak_rss(),
        "fit_seconds": time.perf_counter() - started,
        "rounds": model[-1].get_booster().num_boosted_rounds(),
    }


def _measured(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, int]:
    "Run `command`; return it and its peak RSS (measured by a fresh parent, which waits for nothing else)."
    probe = ("import resource, subprocess, sys, json; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(json.dumps({'rc': done.returncode, 'out': done.stdout, 'err': done.stderr, "
             "'peak': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe, *command], env=env, cwd=env["ML_PROJECT_ROOT"],
                          capture_output=True, text=True)  # fmt: skip
    result = json.loads(done.stdout)
    if result["rc"]:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result['out']}\n{result['err']}")
    return result, result["peak"]


def on_cluster(env, settings, data: Path, rounds: int, workers: int, score: bool = False) -> dict:
    "`ml-project train --cluster --input data` on a fresh cluster: workers' and client's peaks, fit seconds, rounds."
    from ml_project.cluster import engine

    cluster = engine.local_cluster(settings, port=_free_port(), workers=workers)
    engine.start_cluster(cluster)
    try:
        bin_ = str(Path(sys.executable).parent / "ml-project")
        command = [bin_, "train", "-q", "-c", CONFIG, "--cluster", cluster.address, "--input", str(data),
                   *_settings_args(rounds)]  # fmt: skip
        started = time.perf_counter()
        result, client_peak = _measured(command, env)
        seconds = time.perf_counter() - started
        with engine.connect(cluster.address) as client:
            worker_peaks = list(client.run(_peak_rss).values())
        fit = float(re.search(r"\(fit ([\d.]+)s\)", result["out"]).group(1))
        version = re.search(r"registered (\S+) v(\d+)", result["out"]).groups()
        out = {"client": client_peak, "workers": worker_peaks, "peak": client_peak + sum(worker_peaks),
               "fit_seconds": fit, "seconds": seconds, "model": f"{version[0]}:{version[1]}"}  # fmt: skip
        metadata = json.loads((settings.models_dir / "churn_xgboost" / "metadata.json").read_text())
        out["rows"], out["test_roc_auc"] = metadata["rows"], metadata["metrics"]["test_roc_auc"]
        if score:
            scored = data.parent / f"{data.name}-scored"
            started = time.perf_counter()
            result, _ = _measured([bin_, "predict", "--model", out["model"], "--input", str(data), "--output",
                                   str(scored), "--cluster", cluster.address], env)  # fmt: skip
            out["predict_seconds"] = time.perf_counter() - started
            out["predict_summary"] = result["out"].strip().splitlines()[-1]
        return out
    finally:
        engine.stop_cluster(cluster)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,5,10", help="millions of rows, both paths")
    parser.add_argument("--big", type=float, default=20, help="millions of rows, the cluster only (0: none)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--in-process", help=argparse.SUPPRESS)  # internal: one in-process run on this folder
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(in_process(args.in_process, args.rounds)))
        return

    from ml_project.serve.predictor import ModelPredictor
    from ml_project.settings import get_settings

    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "project").mkdir()
        env = project_copy(tmp / "project")
        os.environ.update({"ML_PROJECT_ROOT": env["ML_PROJECT_ROOT"], "ML_PROJECT_MODE": "careful"})
        settings = get_settings()
        cli(env, "data", "-c", CONFIG)  # the raw data acquired and recorded, as a first run does
        started = time.perf_counter()
        data = _data(settings, [*sizes, *([args.big] if args.big else [])], args.file_rows, tmp / "data")
        print(f"churn resampled to {', '.join(f'{m:g} M' for m in data)} rows in {time.perf_counter() - started:.0f} s; "
              f"{args.rounds} rounds, 2-fold CV, {args.workers} one-thread workers\n")  # fmt: skip
        table = {}
        for m in sizes:
            here, _ = _measured(
                [sys.executable, __file__, "--in-process", str(data[m]), "--rounds", str(args.rounds)], env
            )
            here = json.loads(here["out"])
            there = on_cluster(env, settings, data[m], args.rounds, args.workers)
            table[m] = (here, there)
            print(f"{m:g} M rows: in one process {here['peak'] / 2**30:.2f} GiB, {here['fit_seconds']:.1f} s fit; "
                  f"cluster {there['peak'] / 2**30:.2f} GiB (workers {', '.join(f'{w / 2**30:.2f}' for w in there['workers'])}, "
                  f"client {there['client'] / 2**30:.2f}), {there['fit_seconds']:.1f} s fit, {there['seconds']:.0f} s run", flush=True)  # fmt: skip

        def per_million(peak, m):
            return peak / m / 2**20

        print(f"\n{'rows':>6s} {'in one process':>30s} {'on the cluster (total)':>30s} {'ratio':>6s}")
        print(f"{'':>6s} {'MiB/M rows':>12s} {'s/round':>8s} {'':>8s} {'MiB/M rows':>12s} {'s/round':>8s}")
        for m, (here, there) in table.items():
            print(f"{m:>5g}M {per_million(here['peak'], m):12,.0f} {here['fit_seconds'] / args.rounds:8.3f} {'':>8s} "
                  f"{per_million(there['peak'], m):12,.0f} {there['fit_seconds'] / args.rounds:8.3f} "
                  f"{there['peak'] / here['peak']:6.2f}")  # fmt: skip
        if len(table) > 1:
            measured = list(table.items())
            (a, (ha, ta)), (b, (hb, tb)) = measured[0], measured[-1]
            marginal_here = (hb["peak"] - ha["peak"]) / (b - a) / 2**20
            marginal_there = (tb["peak"] - ta["peak"]) / (b - a) / 2**20
            print(f"\nmarginal memory per million rows ({a:g} M to {b:g} M): in one process {marginal_here:,.0f} MiB, "
                  f"on the cluster {marginal_there:,.0f} MiB: ratio {marginal_there / marginal_here:.2f}   (goal <= 0.33)")  # fmt: skip
            total = 24 * 2**30
            fixed = ha["peak"] - marginal_here * 2**20 * a
            print(f"in one process, {total / 2**30:.0f} GiB hold about {(total - fixed) / (marginal_here * 2**20):.0f} M rows "
                  "(extrapolated from the sizes above)")  # fmt: skip
        if args.big:
            there = on_cluster(env, settings, data[args.big], args.rounds, args.workers, score=True)
            rows = sum(there["rows"].values())
            predictor = ModelPredictor.load(there["model"], settings)
            import pandas as pd

            answer = predictor.predict(pd.read_parquet(next(data[args.big].glob("*.parquet"))).head(5))
            print(f"\n{args.big:g} M rows on the cluster   (goal >= 20 M): trained {rows:,} rows "
                  f"({', '.join(f'{k} {v:,}' for k, v in there['rows'].items())}) in {there['seconds']:.0f} s "
                  f"({there['fit_seconds']:.0f} s final fit, {there['fit_seconds'] / args.rounds:.2f} s/round); "
                  f"peak {there['peak'] / 2**30:.2f} GiB in all (workers {', '.join(f'{w / 2**30:.2f}' for w in there['workers'])} GiB, "
                  f"client {there['client'] / 2**30:.2f} GiB); test ROC-AUC {there['test_roc_auc']:.4f}; registered {there['model']}")  # fmt: skip
            print(f"predict --cluster with it: {there['predict_seconds']:.0f} s: {there['predict_summary']}")
            print(f"ModelPredictor serves {there['model']}: {list(answer.labels)}")


if __name__ == "__main__":
    main()
