"""Batch scoring on a Dask cluster beside today's `ml-project predict` in one process, on the same rows.

The churn XGBoost champion (careful mode, trained in a throwaway project) scores the churn test split resampled to
`--rows` rows (not committed: made here), written as `--files` Parquet files (one partition each) and as one file
for the in-process reference. Measured, in this run:

- in-process `score_file` (what `ml-project predict` runs): rows/s and the process's peak memory;
- `score_on_cluster` on a cluster this project starts (`ml-project services start --dask K`) with K = 1 and K = 2
  single-thread workers: rows/s, after a warm-up job that loads the model on every worker, and each worker's peak
  memory; parallel efficiency = rate(2) / (2 x rate(1)), goal >= 0.85 on this 2-core machine.

Run: .venv/bin/python benchmarks/cluster.py [--rows 2000000] [--files 16] [--repeats 2]
Takes about 3 minutes at 2 M rows.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning_budget import cli, project_copy


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _data(settings, rows: int, files: int, folder: Path) -> Path:
    "The churn test split resampled to `rows` rows: `files` Parquet files in folder/parts, and all of them in one."
    from ml_project.config import load_config
    from ml_project.split import load_splits

    X = load_splits(load_config(settings.configs_dir / "churn_xgboost.yaml"), settings).X["test"]
    frame = X.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    frame.insert(0, "rownames", np.arange(1, rows + 1))
    (folder / "parts").mkdir(parents=True)
    size = -(-rows // files)
    for i in range(files):
        frame.iloc[i * size : (i + 1) * size].to_parquet(folder / "parts" / f"part{i:03d}.parquet", index=False)
    frame.to_parquet(folder / "all.parquet", index=False)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed jobs per setting; the best is kept")
    args = parser.parse_args()

    import os

    from ml_project.cluster import engine
    from ml_project.cluster.scoring import score_on_cluster
    from ml_project.serve.batch import score_file
    from ml_project.serve.predictor import ModelPredictor
    from ml_project.settings import get_settings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "project").mkdir()
        env = project_copy(tmp / "project")
        cli(env, "train", "-q", "-c", "configs/churn_xgboost.yaml")
        os.environ.update({"ML_PROJECT_ROOT": env["ML_PROJECT_ROOT"], "ML_PROJECT_MODE": "careful"})
        settings = get_settings()
        data = _data(settings, args.rows, args.files, tmp / "data")
        print(f"{args.rows:,} rows: {args.files} Parquet files and one; churn champion (XGBoost, careful mode)\n")

        predictor = ModelPredictor.load("churn", settings)
        best = min(
            score_file(predictor, data / "all.parquet", tmp / "here.parquet").seconds for _ in range(args.repeats)
        )
        rates = {"in-process": args.rows / best}
        memory = {"in-process": _peak_rss()}

        for workers in (1, 2):
            cluster = engine.local_cluster(settings, port=_free_port(), workers=workers)
            engine.start_cluster(cluster)
            try:
                with engine.connect(cluster.address) as client:
                    score_on_cluster("churn", data / "parts" / "part000.parquet", tmp / "warm", client, settings)
                    times = []
                    for _ in range(args.repeats):
                        started = time.perf_counter()
                        summary = score_on_cluster("churn", data / "parts", tmp / f"scored{workers}", client, settings)
                        times.append(time.perf_counter() - started)
                        assert summary.scored == args.rows, summary
                    rates[f"cluster, {workers} worker(s)"] = args.rows / min(times)
                    memory[f"cluster, {workers} worker(s)"] = max(client.run(_peak_rss).values())
            finally:
                engine.stop_cluster(cluster)

    efficiency = rates["cluster, 2 worker(s)"] / (2 * rates["cluster, 1 worker(s)"])
    print(f"{'':24s} {'rows/s':>12s} {'peak memory (per worker)':>26s}")
    for name, rate in rates.items():
        print(f"{name:24s} {rate:12,.0f} {memory[name] / 2**20:22,.0f} MiB")
    print(f"\nparallel efficiency, 2 workers vs 1: {efficiency:.2f}   (goal >= 0.85)")
    print(f"cluster, 2 workers vs in-process predict: {rates['cluster, 2 worker(s)'] / rates['in-process']:.2f}x")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
