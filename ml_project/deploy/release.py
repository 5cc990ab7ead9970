"""The release: the registry's champion through its gates, then onto the running stack blue/green; and back.

    ml-project release --model churn        # make release: gates, then the idle slot takes the traffic
    ml-project release --rollback           # the slot that served before takes it back

The gates, in order, each reported with what it found; the first that fails stops the release, and the slot that
serves now goes on serving:

1. **tests**: the tests that guard a model (tests/test_candidate.py) pass on this candidate's files;
2. **champion**: the candidate is the registry's champion, and its `promotion` tag says why;
3. **reference**: its monitoring reference (reference.json and reference.parquet) is there;
4. **image**: its image builds (or the engine holds one whose label is this model's hash);
5. **smoke**: the image, run alone on a free port of 127.0.0.1, answers the golden rows (the first rows of the
   monitoring reference, which is saved with the model, and its example) as `ModelPredictor` does in this process,
   to 1e-9, one row at a time and as one batch;
6. **load**: one keep-alive client's one-row requests to that container meet the service's goals (p50 <= 3 ms,
   p99 <= 10 ms, as `benchmarks/serving.py` sets them), and 4 concurrent clients get no error.

Then blue/green: the idle slot's replicas start with the new image; once the balancer's health checks see them
ready, traffic moves (a key in HAProxy's map, through its admin socket: requests in flight finish where they are);
the old slot is drained (SIGTERM) and stopped, its containers kept so that `--rollback` starts them again. A
rollback runs only the image and smoke gates: its image served before.

Every release, passed or failed, is recorded: tags on the model version (`release.status`, `release.image`,
`release.image_id`, `release.gates` as JSON, `release.started`, `release.finished`, `release.slot`) and a line in the
stack's state (secrets/stack/live/stack.json). The champion alias is the registry's decision, not the release's: a
rollback changes what serves and tags the version it left `rolled back`.

A canary (a share of the traffic to the new slot, compared on the prediction log) would be one more map key and a
`rand()` rule in haproxy.cfg; it is not built: with a champion chosen on validation rows and gated on golden rows,
the switch is all or nothing.

A plain module, not a notebook: it drives containers and a balancer; tests/test_release.py releases a new champion
under load with no failed request and shows that a release whose smoke test fails keeps the old version.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from ml_project.deploy.image import container_engine, image_exists, run_container, source_tree, wait_ready
from ml_project.deploy.stack import (
    SLOTS,
    haproxy_command,
    image_for,
    model_label,
    read_state,
    replica_states,
    start_slot,
    stop_slot,
    wait_slot,
    write_live,
)
from ml_project.errors import MLProjectError, ServiceError
from ml_project.serve.keys import key_digest
from ml_project.serve.predictor import ModelPredictor
from ml_project.settings import Settings
from ml_project.train.registry import current_champion, fetch_model, parse_model_ref

log = logging.getLogger(__name__)

__all__ = ["GOLDEN_ROWS", "Gate", "Release", "golden_rows", "release", "same_answers"]

GOLDEN_ROWS = 32  # rows of the monitoring reference the smoke test sends
LATENCY_GOALS_MS = (3.0, 10.0)  # one row, one keep-alive client: p50, p99 (the service's goals, benchmarks/serving.py)
TOLERANCE = 1e-9


@dataclass
class Gate:
    "One gate of a release: its name, whether it passed, what it found, how long it took."

    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Release:
    "What a release did: its status (`released`, `rolled back`, `failed`), the gates, the slots, the times."

    status: str
    model: dict  # name, version, sha256 of the candidate
    image: str = ""
    image_id: str = ""
    slot: str = ""  # the slot it moved traffic to (or would have)
    previous: str = ""  # the slot that served before
    gates: list[Gate] = field(default_factory=list)
    reason: str = ""  # why it failed
    started: str = ""
    finished: str = ""
    rollback: bool = False

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def golden_rows(
    folder: Path,  # a verified model's folder
    count: int = GOLDEN_ROWS,
) -> list[dict]:
    "The rows a release checks the image on: the model's example and the first `count` rows of its monitoring reference (rows as the service receives them: missing values as null)."
    metadata = json.loads((folder / "metadata.json").read_text())
    rows = [metadata["example"]]
    reference = folder / "reference.parquet"
    if reference.is_file():
        frame = pd.read_parquet(reference).head(count)
        rows += json.loads(frame.astype(object).to_json(orient="records", date_format="iso"))
    return rows


def same_answers(
    got: list[dict],  # predictions from the service (its `predictions`)
    want: list[dict],  # `ModelPredictor.predict(rows).to_records()` in this process
    tolerance: float = TOLERANCE,
) -> str:
    "Empty if the answers agree (labels equal, numbers within `tolerance`), else the first difference in words."
    if len(got) != len(want):
        return f"{len(got)} answers for {len(want)} rows"
    for i, (g, w) in enumerate(zip(got, want)):
        if set(g) != set(w):
            return f"row {i}: fields {sorted(g)} instead of {sorted(w)}"
        for key, expected in w.items():
            value = g[key]
            if isinstance(expected, int | float) and not isinstance(expected, bool):
                if not (isinstance(value, int | float) and abs(value - expected) <= tolerance * max(1, abs(expected))):
                    return f"row {i}: {key} {value!r} instead of {expected!r}"
            elif value != expected:
                return f"row {i}: {key} {value!r} instead of {expected!r}"
    return ""


def _gate(gates: list[Gate], report: Callable[[Gate], None] | None, name: str, check: Callable[[], str]) -> bool:
    "Run one gate; `check` returns what it found or raises with why it failed."
    started = time.perf_counter()
    try:
        gate = Gate(name, True, check())
    except (MLProjectError, OSError, ValueError, KeyError, httpx.HTTPError, subprocess.SubprocessError) as error:
        gate = Gate(name, False, str(error).strip() or type(error).__name__)
    gate.seconds = round(time.perf_counter() - started, 2)
    gates.append(gate)
    if report:
        report(gate)
    return gate.passed


def _tests(folder: Path, settings: Settings) -> str:
    "The guarding tests (tests/test_candidate.py) on the candidate's files, in a fresh interpreter."
    tests = source_tree(settings) / "tests" / "test_candidate.py"
    if not tests.is_file():
        raise ServiceError(f"{tests} is missing: release from a checkout of the project")
    env = {**os.environ, "ML_PROJECT_CANDIDATE": str(folder), "ML_PROJECT_ROOT": str(settings.root)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                          capture_output=True, text=True, env=env, cwd=tests.parent.parent)  # fmt: skip
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        raise ServiceError(f"tests/test_candidate.py failed: {summary}\n{done.stdout[-3000:]}")
    return summary


def _champion(name: str, version: str, settings: Settings) -> str:
    from mlflow.tracking import MlflowClient

    champion = current_champion(name, settings)
    if champion != version:
        raise ServiceError(f"{name} v{version} is not the champion (the champion is v{champion}): "
                           "only the registry's champion is released")  # fmt: skip
    tags = MlflowClient(settings.mlflow_tracking_uri).get_model_version(name, version).tags
    if not tags.get("promotion"):
        raise ServiceError(f"{name} v{version} has no promotion tag saying why it is the champion")
    return f"v{version} is the champion: {tags['promotion']}"


def _reference(folder: Path) -> str:
    missing = [f for f in ("reference.json", "reference.parquet") if not (folder / f).is_file()]
    if missing:
        raise ServiceError(f"no monitoring reference: {', '.join(missing)} missing in the model's files")
    rows = json.loads((folder / "reference.json").read_text())["rows"]
    return f"{rows['kept']:,} training rows, {rows['valid']:,} validation predictions"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Smoke:
    "The candidate's image alone on a free port of 127.0.0.1, with a key of its own, for the smoke and load gates."

    def __init__(self, image: str, engine: str):
        self.key = os.urandom(18).hex()
        env = {
            "ML_PROJECT_API_KEYS": "env:ML_PROJECT_KEYS",
            "ML_PROJECT_KEYS": f"release predict {key_digest(self.key)}",
        }
        self.container = run_container(
            image, _free_port(), env=env, engine=engine, name=f"ml-project-release-{os.getpid()}"
        )
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def smoke(self, folder: Path, settings: Settings) -> str:
        ready = wait_ready(self.container, timeout=90)
        rows = golden_rows(folder)
        want = ModelPredictor.from_path(folder, settings).predict(rows).to_records()
        with httpx.Client(base_url=self.container.url, headers=self.headers, timeout=30) as client:
            batch = client.post("/predict", json={"rows": rows})
            if batch.status_code != 200:
                raise ServiceError(f"the golden rows as one batch: {batch.status_code} {batch.text[:300]}")
            differs = same_answers(batch.json()["predictions"], want)
            for i, row in enumerate(rows):
                if differs:
                    break
                one = client.post("/predict", json={"rows": [row]})
                if one.status_code != 200:
                    raise ServiceError(f"golden row {i} alone: {one.status_code} {one.text[:300]}")
                differs = same_answers(one.json()["predictions"], want[i : i + 1])
        if differs:
            raise ServiceError(f"the container's answers differ from ModelPredictor's: {differs}")
        return f"ready in {ready:.1f} s; {len(rows)} golden rows, alone and as a batch, equal to ModelPredictor to {TOLERANCE:g}"

    def load(self, folder: Path, goals: tuple[float, float], requests: int = 300, clients: int = 4) -> str:
        row = golden_rows(folder, 0)[0]
        with httpx.Client(base_url=self.container.url, headers=self.headers, timeout=30) as client:
            for _ in range(30):  # warm: the first requests compile and fill caches
                client.post("/predict", json={"rows": [row]})
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                answer = client.post("/predict", json={"rows": [row]})
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    raise ServiceError(f"one-row request: {answer.status_code} {answer.text[:300]}")
        p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
        errors, answered = _concurrent(self.container.url, self.headers, row, clients, seconds=2)
        found = f"one row: p50 {p50:.2f} ms, p99 {p99:.2f} ms (goals {goals[0]:g} / {goals[1]:g}); " \
                f"{clients} clients: {answered} answers, {len(errors)} errors"  # fmt: skip
        if p50 > goals[0] or p99 > goals[1] or errors or not answered:
            raise ServiceError(found + (f": {errors[0]}" if errors else ""))
        return found

    def stop(self):
        self.container.stop(timeout=10)


def _concurrent(url: str, headers: dict, row: dict, clients: int, seconds: float) -> tuple[list[str], int]:
    "Errors and answers from `clients` keep-alive clients sending one row for `seconds` (bounded)."
    errors, answered, stop_at = [], [0], time.monotonic() + seconds

    def client_loop():
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while time.monotonic() < stop_at:
                try:
                    answer = client.post("/predict", json={"rows": [row]})
                    if answer.status_code == 200:
                        answered[0] += 1
                    else:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(repr(e))

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors, answered[0]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _image_id(image: str, engine: str) -> str:
    done = subprocess.run([engine, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True)
    return done.stdout.strip()


def _drained(stats: str, slot: str, timeout: float = 10) -> None:
    "Wait (bounded) until the balancer has no request in flight to `slot`'s backend."
    import csv
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{stats};csv", timeout=5) as answer:
            rows = csv.DictReader(line.lstrip("# ") for line in answer.read().decode().splitlines())
            current = [int(r["scur"] or 0) for r in rows if r["pxname"] == slot and r["svname"] == "BACKEND"]
        if not any(current):
            return
        time.sleep(0.2)


def _switch(settings: Settings, state: dict, to: str, engine: str) -> str:
    "Start slot `to` with its image, move traffic to it once healthy, stop the old slot; the state written at each step."
    name, old = state["name"], state["live"]
    stats = f"http://127.0.0.1:{state['stats_port']}/stats"
    write_live(settings, state, scraped=(old, to))  # Prometheus scrapes both while they overlap
    start_slot(settings, state, to, engine, name)
    try:
        wait_slot(stats, to, timeout=120)
    except ServiceError:
        stop_slot(engine, to, name, timeout=5)
        write_live(settings, state)
        raise
    map_file = "/etc/haproxy/live/live.map"
    haproxy_command(engine, f"set map {map_file} live {to}", name)
    shown = haproxy_command(engine, f"show map {map_file}", name)
    if f"live {to}" not in shown:
        raise ServiceError(f"the balancer's map does not say `live {to}` after the switch: {shown!r}")
    state["live"] = to
    write_live(settings, state, scraped=(old, to))  # a balancer restarted now reads the new slot
    _drained(stats, old)
    stop_slot(engine, old, name)  # SIGTERM: whatever it still holds is answered
    write_live(settings, state)
    return f"traffic on {to} ({', '.join(f'{k} {v}' for k, v in replica_states(stats).items() if to in k)})"


def _record(result: Release, settings: Settings, state: dict | None):
    "Tags on the model version and a line in the stack's state: a failed release is recorded as a passed one is."
    result.finished = _now()
    if state is not None:
        state.setdefault("releases", []).append(asdict(result))
        write_live(settings, state)
    name, version = result.model.get("name"), result.model.get("version")
    if not (name and version):
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri)
    if result.status == "failed":  # beside the version's last release, not over it
        failure = {"when": result.finished, "gate": result.gates[-1].name if result.gates else "", "image": result.image,
                   "reason": result.reason}  # fmt: skip
        tags = {"release.last_failure": json.dumps(failure)}
    else:
        status = "released (a rollback)" if result.status == "rolled back" else result.status  # it serves again
        tags = {"release.status": status, "release.image": result.image, "release.image_id": result.image_id,
                "release.slot": result.slot, "release.started": result.started, "release.finished": result.finished,
                "release.gates": json.dumps([asdict(g) for g in result.gates])}  # fmt: skip
    try:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value[:5000])
    except (MlflowException, OSError) as error:  # the release is done either way; the stack's state holds it
        log.warning("could not tag %s v%s with the release: %s", name, version, error)


def release(
    model: str,  # the registered model to release: `churn` (its champion) or `churn:<the champion's version>`
    settings: Settings,  # the tracking URI, the project root (the stack's state is under secrets/stack/live)
    rollback: bool = False,  # return to the slot that served before instead
    image: str | None = None,  # release this image (e.g. built by CI) instead of building the candidate's
    latency_goals_ms: tuple[float, float] = LATENCY_GOALS_MS,  # one-row p50, p99 for the load gate
    report: Callable[[Gate], None] | None = None,  # called with each gate as it finishes
) -> Release:
    "Release `model` onto the running stack through the gates, blue/green; or roll back. Recorded either way."
    state = read_state(settings)
    if not state or not state.get("live"):
        raise ServiceError("no stack to release onto: start it with `ml-project stack up` (make stack)")
    engine = container_engine(state.get("engine"))
    if state["live"] not in SLOTS:
        raise ServiceError(f"the stack's state names no live slot: {state['live']!r}")
    old = state["live"]
    to = next(s for s in SLOTS if s != old)
    result = Release(status="failed", model={}, slot=to, previous=old, started=_now(), rollback=rollback)
    idle = state.get(to)  # what the idle slot held: still there for a rollback if this release does not switch
    smoke = None
    try:
        if rollback:
            return _rollback(settings, state, engine, to, result, report)
        folder, info = fetch_model(parse_model_ref(model, settings), settings)
        if not info["version"]:
            raise ServiceError(f"{model}: a release takes a registered model (its champion), not a folder")
        metadata = json.loads((folder / "metadata.json").read_text())
        result.model = {"name": info["name"], "version": info["version"], "sha256": metadata["sha256"]}
        gates = result.gates
        passed = (
            _gate(gates, report, "tests", lambda: _tests(folder, settings))
            and _gate(gates, report, "champion", lambda: _champion(info["name"], info["version"], settings))
            and _gate(gates, report, "reference", lambda: _reference(folder))
        )
        if passed:

            def build():
                nonlocal image
                if image is None:
                    image, _ = image_for(
                        model, settings, engine, state.get("base"), state.get("repository", "ml-project")
                    )
                elif not image_exists(image, engine):
                    raise ServiceError(f"no image {image} in {engine}'s store")
                held = model_label(image, engine)
                if held != result.model["sha256"]:
                    raise ServiceError(
                        f"{image} holds the model {held[:12] or 'none'}, not {result.model['sha256'][:12]}"
                    )
                result.image, result.image_id = image, _image_id(image, engine)
                return f"{image} ({result.image_id[:19]})"

            passed = _gate(gates, report, "image", build)
        if passed:
            smoke = _Smoke(result.image, engine)
            passed = _gate(gates, report, "smoke", lambda: smoke.smoke(folder, settings)) and _gate(
                gates, report, "load", lambda: smoke.load(folder, latency_goals_ms)
            )
            smoke.stop()
            smoke = None
        if not passed:
            failed = gates[-1]
            result.reason = (
                f"gate {failed.name} failed: {failed.detail.splitlines()[0]}; {state[old]['image']} goes on serving"
            )
            return result
        state[to] = {"image": result.image, "model": result.model}
        detail = _switch(settings, state, to, engine)
        result.status = "released"
        result.gates.append(Gate("switch", True, detail))
        return result
    except Exception as error:
        result.reason = f"{type(error).__name__}: {error}; {state[old]['image']} goes on serving"
        if state["live"] != old:  # traffic had moved: the new slot is live, say so
            result.status, result.reason = "released", f"released, then: {error}"
        else:
            state[to] = idle
        raise
    finally:
        if smoke is not None:
            smoke.stop()
        _record(result, settings, state)


def _rollback(settings: Settings, state: dict, engine: str, to: str, result: Release, report) -> Release:
    "The slot that served before takes the traffic back, after the image and smoke gates."
    previous = state.get(to)
    if not previous:
        raise ServiceError("nothing to roll back to: no release has replaced the first version yet")
    result.model, image = previous["model"], previous["image"]
    name, version = result.model["name"], result.model["version"]
    folder, _ = fetch_model(f"{name}:{version}", settings)

    def check_image():
        if not image_exists(image, engine) or model_label(image, engine) != result.model["sha256"]:
            raise ServiceError(
                f"{image} is gone or holds another model: build it again with `ml-project image build --model {name}:{version}`"
            )
        result.image, result.image_id = image, _image_id(image, engine)
        return f"{image} ({result.image_id[:19]}) served before"

    smoke = None
    try:
        if _gate(result.gates, report, "image", check_image):
            smoke = _Smoke(image, engine)
            _gate(result.gates, report, "smoke", lambda: smoke.smoke(folder, settings))
    finally:
        if smoke is not None:
            smoke.stop()
    if not result.gates[-1].passed:
        result.reason = f"gate {result.gates[-1].name} failed: {result.gates[-1].detail.splitlines()[0]}"
        return result
    left = state[state["live"]]["model"]
    result.gates.append(Gate("switch", True, _switch(settings, state, to, engine)))
    result.status = "rolled back"
    if left.get("version"):
        from mlflow.tracking import MlflowClient

        MlflowClient(settings.mlflow_tracking_uri).set_model_version_tag(
            left["name"], left["version"], "release.status", "rolled back")  # fmt: skip
    return result
