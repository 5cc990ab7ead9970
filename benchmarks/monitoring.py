"""Drift detection on the churn data: false alarms on windows with no shift, and the power to find injected shifts.

    .venv/bin/python benchmarks/monitoring.py [--windows 200] [--power-windows 100]

The reference is the churn training split (careful mode); windows are drawn with replacement from the held-out rows
(validation and test), which come from the same distribution. With the project's defaults (Evidently's tests and
thresholds, `ml_project.monitoring`):

- false alarms: `--windows` windows of 500 rows with no shift; the share in which the dataset-drift alert fires
  (target <= 5 %), and the share in which any single column is flagged (drift or data quality);
- power: for each injected shift and window size (200 / 1,000 / 5,000 rows), the share of `--power-windows` windows
  in which the shifted column is flagged, and in which the dataset-drift alert fires:
  a mean shift of 0.25 SD in `monthly_charges`; the share of `Two year` contracts doubled; a new `payment_method`
  in 5 % of rows; 10 % of `total_charges` missing; and concept drift: 20 % of the labels flipped, found by the
  ROC-AUC of the model's scores falling (bootstrap interval) below its validation AUC.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def double_share(window: pd.DataFrame, pool: pd.DataFrame, column: str, level: str, rng) -> pd.DataFrame:
    "Redraw `window` from `pool` with the rows of `level` weighted so that its share doubles (capped at 1)."
    is_level = (pool[column] == level).to_numpy()
    share = is_level.mean()
    target = min(1.0, 2 * share)
    weights = np.where(is_level, target / share, (1 - target) / (1 - share))
    return pool.sample(len(window), replace=True, weights=weights, random_state=int(rng.integers(1 << 31)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200, help="windows of 500 rows for the false-alarm rate")
    parser.add_argument("--power-windows", type=int, default=100, help="windows per shift and size")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.pop("ML_PROJECT_MODE", None)
    from ml_project.config import get_settings, load_config
    from ml_project.evaluation import positive_scores
    from ml_project.features import load_splits
    from ml_project.monitoring import data_quality, decayed, metric_interval, table_drift
    from ml_project.training import train_model
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(ROOT, mode="careful", models_dir=Path(tmp) / "models", processed_dir=Path(tmp) / "processed")
        config = load_config(settings.configs_dir / "churn_xgboost.yaml")
        splits = load_splits(config, settings)
        reference, _ = splits["train"]
        held_out = pd.concat([splits.X["valid"], splits.X["test"]])
        labels = pd.concat([splits.y["valid"], splits.y["test"]])
        print(f"reference: {len(reference):,} training rows; windows drawn from {len(held_out):,} held-out rows\n")

        started, fired, any_flag = time.perf_counter(), 0, 0
        for _ in range(args.windows):
            window = held_out.sample(500, replace=True, random_state=int(rng.integers(1 << 31)))
            drift = table_drift(reference, window)
            quality = data_quality(reference, window)
            fired += drift.drifted
            any_flag += bool(drift.drifted_columns) or bool(quality["flags"].map(len).sum())
        seconds = (time.perf_counter() - started) / args.windows
        rate = fired / args.windows
        print(f"False alarms, {args.windows} windows of 500 rows with no shift ({seconds * 1e3:.0f} ms per window, {reference.shape[1]} columns):")
        print(f"  dataset drift fired in {rate:.1%} (target <= 5 %: {'met' if rate <= 0.05 else 'NOT met'}); "
              f"some column flagged in {any_flag / args.windows:.1%}\n")

        model = train_model(*splits["train"], config, settings)
        reference_auc = metric_interval(splits.y["valid"], positive_scores(model, splits.X["valid"]), resamples=200)[0]
        positive = splits.classes[1]
        spread = reference["monthly_charges"].std()
        shifts = {
            "monthly_charges +0.25 SD": ("monthly_charges", lambda w: w.assign(monthly_charges=w["monthly_charges"] + 0.25 * spread)),
            "Two year contracts x2": ("contract", lambda w: double_share(w, held_out, "contract", "Two year", rng)),
            "new payment_method in 5 %": ("payment_method", lambda w: w.assign(payment_method=w["payment_method"].astype(object).where(
                rng.random(len(w)) >= 0.05, "Cryptocurrency"))),
            "10 % of total_charges missing": ("total_charges", lambda w: w.assign(total_charges=w["total_charges"].where(rng.random(len(w)) >= 0.10))),
        }
        sizes = (200, 1000, 5000)
        print(f"Power: share of {args.power_windows} windows in which the shifted column is flagged (dataset drift in brackets)")
        print(f"  {'shift':34s}" + "".join(f"{n:>18,}" for n in sizes))
        for label, (column, shift) in shifts.items():
            cells = []
            for n in sizes:
                found = dataset = 0
                for _ in range(args.power_windows):
                    window = shift(held_out.sample(n, replace=True, random_state=int(rng.integers(1 << 31))))
                    drift = table_drift(reference, window)
                    flags = data_quality(reference, window).set_index("column").loc[column, "flags"]
                    found += column in drift.drifted_columns or bool(flags)
                    dataset += drift.drifted
                cells.append(f"{found / args.power_windows:6.0%} ({dataset / args.power_windows:4.0%})")
            print(f"  {label:34s}" + "".join(f"{c:>18s}" for c in cells))
        cells = []
        for n in sizes:
            found = 0
            for _ in range(args.power_windows):
                picked = held_out.sample(n, replace=True, random_state=int(rng.integers(1 << 31)))
                y = labels.loc[picked.index].to_numpy() == positive
                y = np.where(rng.random(n) < 0.2, ~y, y)
                value, low, high = metric_interval(y, positive_scores(model, picked), resamples=200)
                found += decayed(reference_auc, value, low, high)
            cells.append(f"{found / args.power_windows:6.0%}")
        print(f"  {'20 % of labels flipped (ROC-AUC)':34s}" + "".join(f"{c:>18s}" for c in cells))
        print(f"\n(validation ROC-AUC of the reference model {reference_auc:.3f}; decay = more than 0.02 below it, "
              "with the bootstrap interval below it too)")


if __name__ == "__main__":
    main()
