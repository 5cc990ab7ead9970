"""The prediction service under load, beside `mlflow models serve` and the in-process ModelPredictor, measured in one run.

    .venv/bin/python benchmarks/serving.py [--seconds 60] [--clients 50] [--repeats 2000] [--workers 1]

The churn XGBoost config is trained in careful mode and registered as the champion of `churn` in a temporary project
(its own mlflow.db, models/ and prediction log; the project's own are not touched). Then the same champion is served
twice on free localhost ports, with the same number of uvicorn workers: by `ml-project serve` and by
`mlflow models serve --env-manager local` (JSON `dataframe_records` bodies). For each:

- one row per request from one keep-alive client, `--repeats` requests: p50 and p99 (targets for ours: p50 <= 3 ms,
  p99 <= 10 ms);
- `--clients` concurrent keep-alive clients for `--seconds` seconds (an httpx/asyncio driver in this process, on the
  same 2 cores as the servers): requests/s, p50, p99, errors (targets: >= 2x mlflow's requests/s, 0 errors);
- 1,000 rows per request from one client: rows/s (target: >= 80 % of the in-process ModelPredictor on the same
  1,000 dicts, measured here too), beside a ceiling: `benchmarks/bare_service.py`, a plain ASGI app under uvicorn
  that only parses the body, calls the predictor and encodes the answer.

Every answer is checked (status 200, one prediction per row); the two servers' probabilities for one row are
compared, so both serve the same model.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, url: str, log: Path) -> subprocess.Popen:
    "Start a server and wait until `url` answers 200."
    process = subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{args[0]} stopped:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    sys.exit(f"{' '.join(args)} did not answer {url} within 180 s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen):
    "SIGTERM the server's process group (uvicorn's workers too), by PID."
    import signal

    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def trained_churn(tmp: Path, mode: str) -> dict:
    """The environment of a temporary project under `tmp` (its own mlflow.db, models/ and prediction log; the
    project's own are not touched) in which the churn XGBoost config has been trained and registered in `mode`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")}
    env.update(
        ML_PROJECT_ROOT=str(ROOT),
        ML_PROJECT_MODE=mode,
        ML_PROJECT_MODELS_DIR=str(tmp / "models"),
        ML_PROJECT_PROCESSED_DIR=str(tmp / "processed"),
        ML_PROJECT_MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        ML_PROJECT_MLFLOW_ARTIFACT_ROOT=str(tmp / "mlartifacts"),
        ML_PROJECT_PREDICTION_LOG_DIR=str(tmp / "predictions"),
        ML_PROJECT_API_KEYS="",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    trained = subprocess.run(
        [str(BIN / "ml-project"), "train", "-c", "configs/churn_xgboost.yaml", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if trained.returncode != 0:
        sys.exit(f"training failed:\n{trained.stdout}\n{trained.stderr}")
    return env


def ms(seconds, q: float) -> float:
    return float(np.percentile(seconds, q) * 1e3)


class Target:
    "One server: how to wrap rows in a body and how to count the predictions in an answer."

    def __init__(self, name: str, url: str, wrap, count):
        self.name, self.url, self.wrap, self.count = name, url, wrap, count

    def body(self, rows: list[dict]) -> bytes:
        "The request body, encoded once before timing: a client's encoding is not the server's time."
        return orjson.dumps(self.wrap(rows))

    def check(self, response: httpx.Response, rows: int):
        if response.status_code != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status_code}: {response.text[:300]}")
        answered = self.count(orjson.loads(response.content))
        if answered != rows:
            raise RuntimeError(f"{self.name}: {answered} predictions for {rows} rows")


def one_row(target: Target, rows: list[dict], repeats: int, headers: dict | None = None) -> list[float]:
    bodies = [target.body([r]) for r in rows]
    with httpx.Client(
        timeout=30, headers={**JSON, **(headers or {})}
    ) as client:  # keep-alive: one connection for every request
        for i in range(50):
            target.check(client.post(target.url, content=bodies[i % len(bodies)]), 1)
        out = []
        for i in range(repeats):
            started = time.perf_counter()
            response = client.post(target.url, content=bodies[i % len(bodies)])
            out.append(time.perf_counter() - started)
            target.check(response, 1)
    return out


async def _load(target: Target, rows: list[dict], clients: int, seconds: float):
    bodies = [target.body([r]) for r in rows]
    latencies, errors = [], []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=JSON) as client:
        deadline = time.monotonic() + seconds

        async def user(k: int):
            i = k
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post(target.url, content=bodies[i % len(bodies)])
                    target.check(response, 1)
                    latencies.append(time.perf_counter() - started)
                except Exception as error:
                    errors.append(f"{type(error).__name__}: {error}")
                i += clients

        started = time.perf_counter()
        await asyncio.gather(*(user(k) for k in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def load(target: Target, rows: list[dict], clients: int, seconds: float) -> dict:
    latencies, errors, elapsed = asyncio.run(_load(target, rows, clients, seconds))
    return {
        "rps": len(latencies) / elapsed,
        "p50": ms(latencies, 50),
        "p99": ms(latencies, 99),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests": len(latencies),
    }


def batches(target: Target, rows: list[dict], size: int, seconds: float) -> float:
    chunks = [rows[i : i + size] for i in range(0, len(rows) - size + 1, size)]
    bodies = [target.body(c) for c in chunks]
    with httpx.Client(timeout=120, headers=JSON) as client:
        for b in bodies[:3]:
            target.check(client.post(target.url, content=b), size)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            target.check(client.post(target.url, content=bodies[done % len(bodies)]), size)
            done += 1
        return done * size / (time.perf_counter() - started)


def in_process(predictor, rows: list[dict], size: int, seconds: float) -> float:
    chunks = [rows[i : i + size] for i in range(0, len(rows) - size + 1, size)]
    for c in chunks[:3]:
        predictor.predict(c).to_records()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.predict(chunks[done % len(chunks)]).to_records()  # the same work as the service: rows in, records out
        done += 1
    return done * size / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the concurrent-clients run, per server")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2000, help="one-row requests per server")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, for both servers")
    parser.add_argument("--batch-seconds", type=float, default=15, help="length of the 1,000-row run, per server")
    parser.add_argument("--parts", default="one,load,batch", help="which measurements, comma-separated")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        env = trained_churn(tmp, "careful")
        print(
            f"churn XGBoost trained in careful mode and registered as churn@champion in {time.perf_counter() - started:.0f} s"
        )

        os.environ.update({k: v for k, v in env.items() if k.startswith("ML_PROJECT_")})
        from ml_project.serve.predictor import ModelPredictor
        from ml_project.serve.service import example_row
        from ml_project.settings import get_settings

        settings = get_settings()
        predictor = ModelPredictor.load("churn", settings)
        from ml_project.config import load_config
        from ml_project.split import load_splits

        X_test, _ = load_splits(load_config(settings.configs_dir / "churn_xgboost.yaml"), settings)["test"]
        columns = list(example_row(predictor))
        rows = [{c: (None if v != v else v) for c, v in r.items()} for r in X_test[columns].to_dict(orient="records")]
        rows = (rows * (4000 // len(rows) + 1))[:4000]

        ours_port, theirs_port, bare_port = free_port(), free_port(), free_port()
        ours = Target(
            "ml-project serve",
            f"http://127.0.0.1:{ours_port}/predict",
            lambda rs: {"rows": rs},
            lambda body: len(body["predictions"]),
        )
        theirs = Target(
            "mlflow models serve",
            f"http://127.0.0.1:{theirs_port}/invocations",
            lambda rs: {"dataframe_records": rs},
            lambda body: len(body["predictions"]),
        )
        servers = {
            ours.name: start(
                [
                    str(BIN / "ml-project"),
                    "serve",
                    "--model",
                    "churn",
                    "--port",
                    str(ours_port),
                    "--workers",
                    str(args.workers),
                ],
                env,
                f"http://127.0.0.1:{ours_port}/ready",
                tmp / "ours.log",
            ),
            theirs.name: start(
                [
                    str(BIN / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    "models:/churn@champion",
                    "--env-manager",
                    "local",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(theirs_port),
                    "--workers",
                    str(args.workers),
                ],
                env,
                f"http://127.0.0.1:{theirs_port}/ping",
                tmp / "mlflow.log",
            ),
            "bare": start(
                [
                    str(BIN / "uvicorn"),
                    "bare_service:app",
                    "--app-dir",
                    str(ROOT / "benchmarks"),
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                ],
                {**env, "ML_PROJECT_SERVE_MODEL": "churn"},
                f"http://127.0.0.1:{bare_port}/ping",
                tmp / "bare.log",
            ),
        }
        bare = Target(
            "bare ASGI + predictor",
            f"http://127.0.0.1:{bare_port}/predict",
            lambda rs: {"rows": rs},
            lambda body: len(body["predictions"]),
        )
        try:
            a = httpx.post(ours.url, json=ours.wrap(rows[:1])).json()["predictions"][0]
            b = httpx.post(theirs.url, json=theirs.wrap(rows[:1])).json()["predictions"][0]
            assert abs(a["probability"] - b["probability"]) < 1e-9 and a["prediction"] == b["prediction"], (a, b)
            print(f"the same champion behind both (v{predictor.version}); one row: {a}\n")

            parts = args.parts.split(",")
            if "one" in parts:
                print(f"One row per request, one keep-alive client, {args.repeats} requests (workers: {args.workers})")
                single = {}
                for t in (ours, theirs):
                    seconds = one_row(t, rows, args.repeats)
                    single[t.name] = (ms(seconds, 50), ms(seconds, 99))
                    print(f"  {t.name:20s} p50 {single[t.name][0]:7.2f} ms   p99 {single[t.name][1]:7.2f} ms")
                met = single[ours.name][0] <= 3 and single[ours.name][1] <= 10
                print(f"  target p50 <= 3 ms and p99 <= 10 ms: {'met' if met else 'NOT met'}\n")
            if "load" in parts:
                print(
                    f"{args.clients} concurrent keep-alive clients for {args.seconds:.0f} s each, one row per request"
                )
                loaded = {}
                for t in (ours, theirs):
                    loaded[t.name] = r = load(t, rows, args.clients, args.seconds)
                    print(
                        f"  {t.name:20s} {r['rps']:8.0f} requests/s   p50 {r['p50']:8.1f} ms   p99 {r['p99']:8.1f} ms   "
                        f"errors {r['errors']} of {r['requests'] + r['errors']}"
                        + (f" (first: {r['first_error']})" if r["errors"] else "")
                    )
                ratio = loaded[ours.name]["rps"] / loaded[theirs.name]["rps"]
                met = ratio >= 2 and loaded[ours.name]["errors"] == 0
                print(f"  ratio {ratio:.1f}x (target >= 2x with 0 errors): {'met' if met else 'NOT met'}\n")
            if "batch" in parts:
                print(
                    f"1,000 rows per request, one keep-alive client, {args.batch_seconds:.0f} s each in 3 interleaved rounds (medians)"
                )
                # three interleaved rounds, medians: this machine's speed drifts by a few per cent from minute to minute
                rounds = {name: [] for name in (ours.name, theirs.name, bare.name, "in-process")}
                for _ in range(3):
                    for t in (ours, theirs, bare):
                        rounds[t.name].append(batches(t, rows, 1000, args.batch_seconds / 3))
                    rounds["in-process"].append(in_process(predictor, rows, 1000, args.batch_seconds / 3))
                rates = {name: float(np.median(r)) for name, r in rounds.items()}
                reference = rates.pop("in-process")
                for name, rate in rates.items():
                    print(f"  {name:20s} {rate:9,.0f} rows/s")
                print(
                    f"  {'in-process predictor':20s} {reference:9,.0f} rows/s   (ModelPredictor.predict(1,000 dicts).to_records(), reference)"
                )
                share, ceiling = rates[ours.name] / reference, rates[bare.name] / reference
                print(
                    f"  ml-project serve at {share:.0%} of in-process (target >= 80 %): {'met' if share >= 0.8 else 'NOT met'}; "
                    f"the bare ASGI app (HTTP, JSON and the predictor, nothing else) at {ceiling:.0%}: the ceiling of any service "
                    f"that calls ModelPredictor.predict on the rows"
                )
        finally:
            for process in servers.values():
                stop(process)
        logged = sum(1 for _ in (tmp / "predictions").rglob("*")) if (tmp / "predictions").exists() else 0
        print(f"\n(the service's prediction log: {logged} files under the temporary prediction log folder)")


if __name__ == "__main__":
    main()
