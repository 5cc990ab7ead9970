"""The production stack (deploy/compose.yaml, ml_project.deploy.stack): two replicas of the champion's image behind
HAProxy, Prometheus on both. Requests spread over both replicas; one replica killed under a bounded load fails no
request (the balancer retries elsewhere); Prometheus sees it down and the service-down alert fires; `down` leaves
nothing running.

Needs podman and podman-compose (`make containers`); skipped, saying so, without them. The stack is a project of its
own (`ml-project-test`), on free ports of 127.0.0.1, with its keys under the test project's secrets/stack/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import httpx
import pytest
from conftest import BIN, REPO, compose_or_skip, free_port

from ml_project.deploy import stack

os.environ.setdefault("CONTAINERS_CONF", str(REPO / "deploy" / "podman" / "containers.conf"))
os.environ.setdefault("BUILDAH_ISOLATION", "chroot")
NAME = "ml-project-test"


@pytest.fixture
def running(trained_churn):
    engine = compose_or_skip()
    up = stack.stack_up("churn__fast", trained_churn, free_port(), free_port(), free_port(), engine, name=NAME,
                        mlflow_port=free_port(),
                        repository=f"ml-project-test-{os.getpid()}")  # fmt: skip
    yield trained_churn, engine, up
    stack.stack_down(trained_churn, engine, volumes=True, name=NAME)
    subprocess.run([engine, "rmi", "-f", up.image], capture_output=True)


def _prometheus(up, query: str) -> list[dict]:
    answer = httpx.get(f"{up.prometheus}/api/v1/query", params={"query": query}, timeout=10).json()
    return answer["data"]["result"]


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _under_load(up, headers: dict, row: dict, event, clients: int = 4, seconds: float = 10) -> tuple[list[str], int]:
    "Failed requests and answered ones, from `clients` keep-alive clients for `seconds`, `event` run 3 s in."
    failures, answered, stop_at = [], [0], time.monotonic() + seconds

    def client_loop():
        with httpx.Client(base_url=up.url, headers=headers, timeout=30) as client:
            while time.monotonic() < stop_at:
                try:
                    answer = client.post("/predict", json={"rows": [row]})
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code}: {answer.text[:200]}")
                    else:
                        answered[0] += 1
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3)
    event()
    for t in threads:
        t.join()
    return failures, answered[0]


def test_the_stack_spreads_survives_a_lost_replica_alerts_and_stops(running):
    settings, engine, up = running
    key = up.key_file.read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    from ml_project.serve.predictor import ModelPredictor

    row = ModelPredictor.load("churn__fast", settings).metadata["example"]
    assert httpx.post(f"{up.url}/predict", json={"rows": [row]}).status_code == 401  # the replicas want the key
    assert stack.replica_states(up.stats) == {
        "api-blue-1": "UP",
        "api-blue-2": "UP",
        "api-green-1": "MAINT (resolution)",
        "api-green-2": "MAINT (resolution)",
    }  # not started: no address  # `up` waits for both
    with httpx.Client(base_url=up.url, headers=headers, timeout=30) as client:
        for _ in range(20):
            answer = client.post("/predict", json={"rows": [row]})
            assert answer.status_code == 200, answer.text

    def both_counted():
        counted = _prometheus(up, 'sum by (instance) (mlp_requests_total{endpoint="/predict"})')
        return counted if sum(float(r["value"][1]) > 0 for r in counted) == 2 else None

    spread = _until(both_counted, 60, "Prometheus counting requests on both replicas")
    assert {r["metric"]["instance"] for r in spread} == {"api-blue-1:8080", "api-blue-2:8080"}

    # Monitoring reads every replica's prediction log from the stack's volume: the 20 rows, whichever replica took them
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")}
    env |= {"ML_PROJECT_ROOT": str(settings.root), "ML_PROJECT_MODE": "fast"}

    def monitored():
        done = subprocess.run([str(BIN / "ml-project"), "monitor", "--model", "churn__fast", "--stack"], env=env,
                              cwd=settings.root, capture_output=True, text=True)  # fmt: skip
        return done if done.returncode in (0, 4) and "20 rows of churn__fast v1" in done.stdout else None

    _until(monitored, 30, "ml-project monitor --stack reading the 20 rows both replicas logged")

    # The team's tracking server runs in the stack, on its PostgreSQL: a run and an artefact go in and come back
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(up.mlflow)
    experiment = tracking.create_experiment("stack-test")
    run = tracking.create_run(experiment)
    tracking.log_metric(run.info.run_id, "auc", 0.84)
    (settings.root / "note.txt").write_text("kept in the stack's artefact volume")
    tracking.log_artifact(run.info.run_id, str(settings.root / "note.txt"))
    assert tracking.get_run(run.info.run_id).data.metrics == {"auc": 0.84}
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # served through the server, not a host path
    assert [a.path for a in tracking.list_artifacts(run.info.run_id)] == ["note.txt"]
    found = subprocess.run([engine, "port", f"{NAME}_postgres_1"], capture_output=True, text=True)
    assert found.stdout.strip() == ""  # PostgreSQL has no port on the host

    # Stopped (SIGTERM: it drains) under a bounded load of 4 clients: no request fails
    failures, answered = _under_load(up, headers, row, lambda: subprocess.run([engine, "stop", f"{NAME}_api-blue-2_1"]))
    assert not failures, failures[:5]
    assert answered > 50  # the load was real
    subprocess.run([engine, "start", f"{NAME}_api-blue-2_1"], check=True, capture_output=True)
    _until(lambda: stack.replica_states(up.stats)["api-blue-2"] == "UP", 60, "api-blue-2 back in the balancer")

    # Killed (SIGKILL: no draining) under the same load: every request the balancer had not started answering is
    # retried on the other replica; only a response already cut mid-body can fail (no balancer can replay it), so at
    # most one per client, and never a refused connection, a 5xx or an empty answer
    failures, answered = _under_load(up, headers, row, lambda: subprocess.run([engine, "kill", f"{NAME}_api-blue-1_1"]))
    assert answered > 50
    assert len(failures) <= 4 and all("without sending complete message body" in f for f in failures), failures[:5]

    down = _until(lambda: _prometheus(up, 'up{job="ml-project"} == 0'), 30, "Prometheus seeing api-blue-1 down")
    assert [r["metric"]["instance"] for r in down] == ["api-blue-1:8080"]
    assert stack.replica_states(up.stats)["api-blue-1"] != "UP"  # and the balancer sends it nothing
    firing = _until(
        lambda: [a for a in httpx.get(f"{up.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
                 if a["labels"]["alertname"] == "PredictionServiceDown" and a["state"] == "firing"],
        120, "the PredictionServiceDown alert firing",
    )  # fmt: skip
    assert firing[0]["labels"]["instance"] == "api-blue-1:8080"
    assert firing[0]["annotations"]["runbook"] == "docs/operations.md#service-down"

    assert set(stack.stack_status(settings, engine, NAME).values()) == {"running", "exited"}  # api-blue-1 stays down
    stack.stack_down(settings, engine, name=NAME)
    assert stack.stack_status(settings, engine, NAME) == {}  # nothing left running, or stopped
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{up.url}/ready", timeout=2)


@pytest.mark.skipif(
    not shutil.which("podman"), reason="needs podman (`make containers`) to ask whether the stack is up"
)
def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    # A container whose host port is taken stays `created`, and a health check on that port would be answered by
    # whatever holds it: the stack refuses first, naming the port and what it was for
    import socket

    from ml_project.errors import ServiceError
    from ml_project.settings import Settings

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        with pytest.raises(ServiceError, match=rf"port {taken} on 127.0.0.1 \(for the MLflow server\) is in use"):
            stack.stack_up("churn", Settings(root=tmp_path), free_port(), free_port(), free_port(), "podman",
                           mlflow_port=taken)  # fmt: skip
