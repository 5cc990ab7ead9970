"""Prediction speed and memory: one row through ModelPredictor, and batch scoring of a 5-million-row CSV.

    .venv/bin/python benchmarks/predict.py [--rows 5000000] [--repeats 2000] [--skip-batch]

Each figure is printed beside its reference from the same run:

- one row, dict in, labels and probabilities out (`ModelPredictor.predict`), p50 and p99 over `--repeats` calls,
  for the churn XGBoost pipeline (targets: p50 <= 1 ms, p99 <= 3 ms), the churn seed random forest and the Ames
  random forest; beside the fitted pipeline's `predict_proba` on a one-row DataFrame and, for XGBoost, the bare
  booster on the already-transformed row;
- batch: `ml-project predict` on a CSV made by resampling the churn data (written to a temporary folder, deleted
  after), its rows/s as a whole command and its peak RSS (targets: >= 90 % of the raw pipeline's rows/s, peak
  RSS < 1 GB), beside the raw pipeline scoring the same file as a plain script (pandas reads it in chunks typed as
  in training, `predict_proba`, Arrow writes the probabilities; checked to give the same numbers), and beside the
  pipeline's `predict_proba` on rows already in memory (the compute alone, no reading or writing).

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
CONFIGS = {
    "churn XGBoost": "churn_xgboost.yaml",
    "churn seed RF": "experiment_001.yaml",
    "Ames RF": "ames_random_forest.yaml",
}


def quantiles(seconds: list[float]) -> str:
    return f"p50 {np.percentile(seconds, 50) * 1e3:6.2f} ms   p99 {np.percentile(seconds, 99) * 1e3:6.2f} ms"


def timed(call, repeats: int) -> list[float]:
    for _ in range(min(50, repeats)):
        call()  # warm caches and lazy set-up
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def train(config_name: str, settings):
    from ml_project.config import load_config
    from ml_project.serve.predictor import ModelPredictor
    from ml_project.split import load_splits
    from ml_project.train.files import save_model
    from ml_project.train.training import train_model

    config = load_config(settings.configs_dir / config_name)
    splits = load_splits(config, settings)
    pipeline = train_model(*splits["train"], config, settings)
    threshold = None
    if config.data.task == "classification":  # chosen on validation, as `ml-project train` does
        from ml_project.train.evaluation import choose_threshold, positive_scores

        X_valid, y_valid = splits["valid"]
        threshold = choose_threshold(y_valid, positive_scores(pipeline, X_valid), config.evaluation.threshold_metric)
    folder = save_model(pipeline, config, settings, splits, metrics={}, threshold=threshold)
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
        pipeline_call = (
            (lambda: predictor.pipeline.predict_proba(frames[next(i) % 200]))
            if task == "classification"
            else (lambda: predictor.pipeline.predict(frames[next(i) % 200]))
        )
        ours = timed(lambda: predictor.predict(dicts[next(i) % 200]), repeats)
        reference = timed(pipeline_call, repeats)
        print(f"  {label:14s} ModelPredictor.predict(dict): {quantiles(ours)}")
        print(f"  {'':14s} pipeline on a 1-row DataFrame: {quantiles(reference)}   (reference)")
        estimator = predictor.pipeline.steps[-1][1]
        if hasattr(estimator, "get_booster"):
            rows = predictor.pipeline[:-1].transform(X_test.head(200))
            booster, rounds = estimator.get_booster(), estimator._get_iteration_range(None)
            bare = timed(
                lambda: booster.inplace_predict(rows[next(i) % 200 : next(i) % 200 + 1], iteration_range=rounds),
                repeats,
            )
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


PLAIN_SCRIPT = """
# What a user would write without `ml-project predict`: pandas reads the CSV in chunks typed as in training, applies
# the config's fills, the pipeline scores, Arrow writes the id, the inputs and the answers.
import json, sys
import joblib, numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
folder, csv, out = sys.argv[1:4]
meta = json.load(open(f"{folder}/metadata.json"))
pipeline, schema = joblib.load(f"{folder}/model.joblib"), meta["input_schema"]
dtypes = {c: "float64" if s["dtype"] in ("int", "float") else "category" for c, s in schema.items()}
writer = None
for chunk in pd.read_csv(csv, chunksize=100_000, dtype=dtypes):
    X = chunk[list(schema)].fillna(meta["fill_missing"])
    probability = pipeline.predict_proba(X)[:, 1]
    answers = pd.DataFrame({"prediction": np.where(probability >= meta["threshold"], meta["classes"][1], meta["classes"][0]),
                            "probability": probability}, index=X.index)
    table = pa.Table.from_pandas(pd.concat([chunk[[meta["id_column"]]], X.astype({c: str for c in X.select_dtypes("category")}), answers], axis=1),
                                 preserve_index=False)
    writer = writer or pq.ParquetWriter(out, table.schema)
    writer.write_table(table)
writer.close()
"""


def run(args: list[str], env: dict) -> float:
    "Seconds a command takes, start to end."
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 3):
        sys.exit(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def batch(settings, rows: int):
    import pandas as pd

    predictor, splits = train("churn_xgboost.yaml", settings)
    folder = settings.models_dir / "churn_xgboost"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "resampled.csv"
        started = time.perf_counter()
        resampled_csv(csv, rows, settings)
        print(
            f"\nBatch: {rows:,} rows resampled from the churn data, {csv.stat().st_size / 1e6:,.0f} MB CSV "
            f"(made in {time.perf_counter() - started:.0f} s)"
        )
        env = {
            **os.environ,
            "ML_PROJECT_ROOT": str(settings.root),
            "ML_PROJECT_MODELS_DIR": str(settings.models_dir),
            "ML_PROJECT_MODE": "careful",
        }
        seconds, output = run(
            [
                str(Path(sys.executable).parent / "ml-project"),
                "predict",
                "--model",
                str(folder),
                "--input",
                str(csv),
                "--output",
                str(tmp / "scored.parquet"),
                "--no-progress",
            ],
            env,
        )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux; the first child's
        (tmp / "plain.py").write_text(PLAIN_SCRIPT)
        plain_seconds, _ = run(
            [sys.executable, str(tmp / "plain.py"), str(folder), str(csv), str(tmp / "plain.parquet")], env
        )
        ours, theirs = (
            pd.read_parquet(tmp / f, columns=["probability", "prediction"]) for f in ("scored.parquet", "plain.parquet")
        )
        np.testing.assert_allclose(ours["probability"], theirs["probability"], atol=1e-6)  # the same answers
        assert (ours["prediction"] == theirs["prediction"]).all()
        rate, plain = rows / seconds, rows / plain_seconds
        # the compute alone: the pipeline on 500k rows already in memory, typed as in training
        X = pd.concat([splits.X["train"]] * (500_000 // len(splits.X["train"]) + 1), ignore_index=True).head(500_000)
        started = time.perf_counter()
        for start in range(0, len(X), 100_000):
            predictor.pipeline.predict_proba(X.iloc[start : start + 100_000])
        memory = len(X) / (time.perf_counter() - started)
        from ml_project.serve.batch import _batches

        started = time.perf_counter()
        for _ in _batches(csv, 50_000):
            pass
        reading = rows / (time.perf_counter() - started)
        print(
            f"  ml-project predict, whole command (start, read, check, score, write): {rate:10,.0f} rows/s  ({seconds:.1f} s), "
            f"peak RSS {peak:,.0f} MiB"
        )
        print(
            f"  raw pipeline as a plain script, whole command (same output):        {plain:10,.0f} rows/s  ({plain_seconds:.1f} s, reference)"
        )
        print(
            f"  raw pipeline predict_proba on rows already in memory:               {memory:10,.0f} rows/s  (the compute alone)"
        )
        print(
            f"  reading the CSV alone, as the command reads it (Arrow, text columns): {reading:10,.0f} rows/s  (no scoring)"
        )
        print(
            f"  ratio to the plain script {rate / plain:.2f} (target >= 0.90): {'met' if rate >= 0.9 * plain else 'NOT met'}; "
            f"ratio to the compute alone {rate / memory:.2f}; peak RSS < 1 GB: {'met' if peak < 1024 else 'NOT met'}"
        )
        print("  its own summary: " + output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args()
    os.environ.pop("ML_PROJECT_MODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        from ml_project.settings import get_settings

        settings = get_settings(
            ROOT, mode="careful", models_dir=Path(tmp) / "models", processed_dir=Path(tmp) / "processed"
        )
        one_row(settings, args.repeats)
        if not args.skip_batch:
            batch(settings, args.rows)


if __name__ == "__main__":
    main()
