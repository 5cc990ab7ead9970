"""Drift replay (`make demo-drift`): serve the churn champion, replay customers week by week with a drift that grows,
and run `ml-project monitor` each week as a scheduler would; the alert should fire from the week the drift crosses the
thresholds, not before.

    .venv/bin/python benchmarks/drift_replay.py [--weeks 8] [--per-week 500] [--fast] [--keep DIR]

Everything happens in a fresh project root (a temporary folder, or --keep DIR to look at it afterwards): the churn
XGBoost config is trained there (careful mode unless --fast) and served by `ml-project serve` on a free port of
127.0.0.1. Each simulated week sends `--per-week` customers drawn from the held-out rows (validation and test, which the
model never trained on) in requests of 50 rows. From week 4 on, the week's customers pay more (monthly charges x
1 + 4 % per week of drift) and more of them are on month-to-month contracts (+8 points of share per week, taken from the
other contracts). The expected first alert is the first week whose shift, applied to the whole held-out pool rather
than to a sample, makes `monitor_rows` alert: the answer free of sampling noise that the weekly check should find.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FIRST_DRIFT_WEEK = 4


def drift(week: int, rows: pd.DataFrame, rng) -> pd.DataFrame:
    "The week's customers: from week 4 on, higher charges and more month-to-month contracts, growing each week."
    k = max(0, week - FIRST_DRIFT_WEEK + 1)
    if not k:
        return rows
    switch = rng.random(len(rows)) < 0.08 * k / (
        1 - (rows["contract"] == "Month-to-month").mean()
    )  # +8 points of share per week
    contract = rows["contract"].astype(object).where(~switch | (rows["contract"] == "Month-to-month"), "Month-to-month")
    return rows.assign(monthly_charges=(rows["monthly_charges"] * (1 + 0.04 * k)).round(2), contract=contract)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--per-week", type=int, default=500, help="customers scored each week")
    parser.add_argument("--fast", action="store_true", help="train in fast mode (a quicker, rougher model)")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    import httpx

    from ml_project.config import load_config
    from ml_project.monitor.report import monitor_rows
    from ml_project.serve.predictor import ModelPredictor
    from ml_project.settings import get_settings
    from ml_project.split import load_splits
    from ml_project.train.registry import fetch_model

    rng = np.random.default_rng(args.seed)
    base = (args.keep or Path(tempfile.mkdtemp(prefix="drift-replay-"))).resolve()
    root = base / "project"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copy(ROOT / "settings.ini", root)
    shutil.copytree(ROOT / "configs", root / "configs")
    shutil.copytree(ROOT / "data" / "raw", root / "data" / "raw")
    mode = "fast" if args.fast else "careful"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")} | {
        "ML_PROJECT_ROOT": str(root),
        "ML_PROJECT_MODE": mode,
    }
    model = "churn__fast" if args.fast else "churn"

    def command(*words, check=True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "ml-project"), *words], cwd=root, env=env, capture_output=True, text=True)
        if check and done.returncode:
            raise SystemExit(f"ml-project {' '.join(words)} failed:\n{done.stdout}{done.stderr}")
        return done

    print(f"project: {root} ({mode} mode)\ntraining churn_xgboost ...", flush=True)
    command("train", "-q", "-c", "configs/churn_xgboost.yaml")
    settings = get_settings(root, mode=mode)
    splits = load_splits(load_config(root / "configs" / "churn_xgboost.yaml"), settings)
    pool = pd.concat([splits.X["valid"], splits.X["test"]])

    predictor = ModelPredictor.load(model, settings)
    folder, _ = fetch_model(model, settings)

    def population_alerts(week: int) -> list[str]:
        "The alerts of the week's shift applied to the whole held-out pool: what a check free of sampling noise says."
        shifted = drift(week, pool, np.random.default_rng(0))
        return monitor_rows(folder, pd.concat([shifted, predictor.predict(shifted).to_frame()], axis=1)).alerts

    expected = next((w for w in range(1, args.weeks + 1) if population_alerts(w)), None)

    port = free_port()
    log = open(root / "serve.log", "w")
    service = subprocess.Popen(
        [str(BIN / "ml-project"), "serve", "--model", model, "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if service.poll() is not None:
                raise SystemExit("the service did not start:\n" + (root / "serve.log").read_text())
            time.sleep(0.3)
        print(f"serving {model} on {url}\n")
        print(f"{'week':>4} {'monthly charges':>16} {'month-to-month':>15}  {'monitor':>8}  alerts")
        rows = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for week in range(1, args.weeks + 1):
                customers = drift(
                    week, pool.sample(args.per_week, replace=True, random_state=int(rng.integers(1 << 31))), rng
                )
                records = json.loads(customers.to_json(orient="records"))
                for first in range(0, len(records), 50):
                    answer = client.post("/predict", json={"rows": records[first : first + 50]})
                    answer.raise_for_status()
                time.sleep(1.5)  # one flush of the prediction log (prediction_log_flush_ms)
                out = root / "runs" / "monitoring" / f"week-{week}"
                done = command(
                    "monitor", "--model", model, "--last", str(args.per_week), "--out", str(out), check=False
                )
                if done.returncode not in (0, 4):
                    raise SystemExit(done.stdout + done.stderr)
                summary = json.loads((out / "summary.json").read_text())
                rows.append({"week": week, "alert": done.returncode == 4, "alerts": summary["alerts"]})
                print(
                    f"{week:>4} {customers['monthly_charges'].mean():>16.2f} {(customers['contract'] == 'Month-to-month').mean():>15.1%}"
                    f"  {'ALERT' if done.returncode == 4 else 'quiet':>8}  {'; '.join(summary['alerts']) or '-'}",
                    flush=True,
                )
        overall = root / "runs" / "monitoring" / "all-weeks"
        command("monitor", "--model", model, "--out", str(overall), check=False)
    finally:
        service.terminate()
        service.wait(timeout=60)
        log.close()
    fired = next((r["week"] for r in rows if r["alert"]), None)
    early = [r["week"] for r in rows if r["alert"] and expected and r["week"] < expected]
    print(
        f"\nexpected first alert: week {expected} (the first week whose shift, on the whole held-out pool, fires an alert)"
    )
    print(
        f"first alert: week {fired}; "
        + ("as expected" if fired == expected and not early else "NOT as expected")
        + f"; weeks alerting: {[r['week'] for r in rows if r['alert']]}"
    )
    print(f"reports: {root / 'runs' / 'monitoring'} (week-N/report.html each week; all-weeks/report.html over time)")
    if not args.keep:
        print("(a temporary folder: pass --keep DIR to keep the project)")


if __name__ == "__main__":
    main()
