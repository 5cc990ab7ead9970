"""Prediction speed and memory: one row through ModelPredictor, and batch scoring of a 5-million-row CSV.

    .venv/bin/python benchmarks/predict.py [--rows 5000000] [--repeats 2000] [--skip-batch]

Each figure is printed beside its reference from the same run:

- one row, dict in, labels and probabilities out (`ModelPredictor.predict`), p50 and p99 over `--repeats` calls,
  for the churn XGBoost pipeline (targets: p50 <= 1 ms, p99 <= 3 ms), the churn seed random forest and the Ames
  random forest; beside the fitted pipeline's `predict_proba` on a one-row DataFrame and, for XGBoost, the bare
  booster on the already-transformed row;
- batch: `ml-project predict` on a CSV made by resampling the churn data (written to a temporary folder, deleted
  after), its rows/s and peak RSS (target: >= 90 % of the raw pipeline's rows/s, peak RSS < 1 GB), beside the
  fitted pipeline's `predict_proba` on the same rows already in memory as a typed DataFrame (the raw pipeline).

Models are trained in careful mode on the configs' training splits into a temporary models folder; nothing is
registered, and the project's own models/ and mlflow.db are not touched.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"churn XGBoost": "churn_xgboost.yaml", "churn seed RF": "experiment_001.yaml", "Ames RF": "ames_random_forest.yaml"}


def quantiles(seconds: list[float]) -> str:
    return f"p50 {np.percentile(seconds, 50) * 1e3:6.2f} ms   p99 {np.percentile(seconds, 99) * 1e3:6.2f} ms"


def timed(call, repeats: int) -> list[float]:
    for _ in range(min(50, repeats)): call()  # warm caches and lazy set-up
    out = []
    for _ in range(repeats):
        started = time.perf_counter(); call(); out.append(time.perf_counter() - started)
    return out


def train(config_name: str, settings):
    from ml_project.config import load_config
    from ml_project.features import load_splits
    from ml_project.predictor import ModelPredictor
    from ml_project.registry import save_model
    from ml_project.training import train_model
    config = load_config(settings.configs_dir / config_name)
    splits = load_splits(config, settings)
    pipeline = train_model(*splits["train"], config, settings)
    folder = save_model(pipeline, config, settings, splits, metrics={})
    return ModelPredictor.from_path(folder, settings), splits


def one_row(settings, repeats: int):
    print(f"One row, {repeats} calls each (a different test row each call, cycling over 200)")
    for label, config_name in CONFIGS.items():
        predictor, splits = train(config_name, settings)
        X_test, _ = splits["test"]
        frames = [X_test.iloc[[i]] for i in range(200)]
        dicts = [r for r in X_test.head(200).to_dict(orient="records")]
        task = predictor.task
        i = iter(range(10**9))
        pipeline_call = (lambda: predictor.pipeline.predict_proba(frames[next(i) % 200])) if task == "classification" else \
                        (lambda: predictor.pipeline.predict(frames[next(i) % 200]))
        ours = timed(lambda: predictor.predict(dicts[next(i) % 200]), repeats)
        reference = timed(pipeline_call, repeats)
        print(f"  {label:14s} ModelPredictor.predict(dict): {quantiles(ours)}")
        print(f"  {'':14s} pipeline on a 1-row DataFrame: {quantiles(reference)}   (reference)")
        estimator = predictor.pipeline.steps[-1][1]
        if hasattr(estimator, "get_booster"):
            rows = predictor.pipeline[:-1].transform(X_test.head(200))
            booster, rounds = estimator.get_booster(), estimator._get_iteration_range(None)
            bare = timed(lambda: booster.inplace_predict(rows[next(i) % 200: next(i) % 200 + 1], iteration_range=rounds), repeats)
            print(f"  {'':14s} bare booster, transformed row:  {quantiles(bare)}   (reference)")
        if config_name == "churn_xgboost.yaml":
            met = np.percentile(ours, 50) <= 1e-3 and np.percentile(ours, 99) <= 3e-3
            print(f"  {'':14s} target p50 <= 1 ms and p99 <= 3 ms: {'met' if met else 'NOT met'}")


def resampled_csv(path: Path, rows: int, settings, seed: int = 0):
    "A CSV of `rows` rows drawn with replacement from the churn raw table (written in pieces, as the raw file's columns)."
    import pyarrow as pa
    import pyarrow.csv as pacsv
    raw = pacsv.read_csv(settings.raw_dir / "wa_churn.csv")
    rng = np.random.default_rng(seed)
    with pacsv.CSVWriter(path, raw.schema) as writer:
        for start in range(0, rows, 500_000):
            writer.write_table(raw.take(pa.array(rng.integers(0, raw.num_rows, min(500_000, rows - start)))))


def batch(settings, rows: int):
    import pandas as pd
    predictor, splits = train("churn_xgboost.yaml", settings)
    folder = settings.models_dir / "churn_xgboost"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "resampled.csv"
        started = time.perf_counter()
        resampled_csv(csv, rows, settings)
        print(f"\nBatch: {rows:,} rows resampled from the churn data, {csv.stat().st_size / 1e6:,.0f} MB CSV "
              f"(made in {time.perf_counter() - started:.0f} s)")
        # the raw pipeline: predict_proba on rows already in memory, typed as in training (500k rows: the rate, not the file)
        X = pd.concat([splits.X["train"]] * (500_000 // len(splits.X["train"]) + 1), ignore_index=True).head(500_000)
        started = time.perf_counter()
        for start in range(0, len(X), 100_000): predictor.pipeline.predict_proba(X.iloc[start:start + 100_000])
        raw_rate = len(X) / (time.perf_counter() - started)
        env = {**os.environ, "ML_PROJECT_ROOT": str(settings.root), "ML_PROJECT_MODELS_DIR": str(settings.models_dir),
               "ML_PROJECT_MODE": "careful"}
        started = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).parent / "ml-project"), "predict", "--model", str(folder), "--input", str(csv),
                               "--output", str(tmp / "scored.parquet"), "--no-progress"], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        if done.returncode not in (0, 3): sys.exit(f"ml-project predict failed:\n{done.stdout}\n{done.stderr}")
        scored = pd.read_parquet(tmp / "scored.parquet", columns=["probability"])
        rate = rows / seconds
        print(f"  ml-project predict (read, check, score, write): {rate:10,.0f} rows/s  ({seconds:.1f} s, {len(scored):,} rows scored), "
              f"peak RSS {peak:,.0f} MiB")
        print(f"  raw pipeline predict_proba, in memory:          {raw_rate:10,.0f} rows/s  (reference)")
        print(f"  ratio {rate / raw_rate:.2f} (target >= 0.90): {'met' if rate >= 0.9 * raw_rate else 'NOT met'}; "
              f"peak RSS < 1 GB: {'met' if peak < 1024 else 'NOT met'}")
        print("  " + done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    os.environ.pop("ML_PROJECT_MODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        from ml_project.config import get_settings
        settings = get_settings(ROOT, mode="careful", models_dir=Path(tmp) / "models", processed_dir=Path(tmp) / "processed")
        one_row(settings, args.repeats)
        if not args.skip_batch: batch(settings, args.rows)


if __name__ == "__main__":
    main()
