"""The service under slow, broken and hostile clients, strict request types, and numbers a user can trust on an
imbalanced target (issue 24). Every server binds 127.0.0.1 on a free port and is stopped by its PID; every loop is
bounded (at most 60 connections, a few seconds each). Latency under a slow-client attack is measured by
benchmarks/slow_clients.py, not asserted here."""

import contextlib
import json
import socket
import subprocess
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, ServiceProcess
from conftest import in_process_client as _client
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app as cli
from ml_project.serve.keys import key_digest, parse_api_keys
from ml_project.serve.log import read_prediction_log
from ml_project.serve.predictor import ModelPredictor
from ml_project.serve.service import _json_body, _RepeatedKey
from ml_project.train.files import load_model

runner = CliRunner()
JSON = {"Content-Type": "application/json"}


# --- strict types at the door ---


@pytest.mark.parametrize(
    "field, value",
    [
        ("monthly_charges", True),  # a boolean is not a number
        ("monthly_charges", "29.85"),  # a numeric string is not a number
        ("monthly_charges", "NaN"),  # missing is null, nothing else
        ("tenure", 1.5),  # an integer column takes integers
        ("female", True),  # 0/1 column: booleans only where the column is boolean
        ("contract", 2),  # a category is one of its strings
    ],
)
def test_a_value_of_another_json_type_is_refused_naming_its_field(churn, field, value):
    settings, row = churn
    client, log = _client(settings)
    answer = client.post("/predict", json={"rows": [{**row, field: value}]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", "rows", 0, field]
    assert client.post("/predict", json={"rows": [{**row, "monthly_charges": 30, "tenure": None}]}).status_code == 200
    log.close()


def test_a_key_given_twice_is_refused_naming_the_key(churn):
    settings, row = churn
    client, log = _client(settings)
    body = json.dumps({"rows": [row]})[:-3] + ', "tenure": 3}]}'  # the row's tenure again, last
    answer = client.post("/predict", content=body.encode(), headers=JSON)
    assert answer.status_code == 422 and answer.json()["detail"][0]["type"] == "duplicate_key", answer.text
    assert "'tenure' appears twice" in answer.json()["detail"][0]["msg"]
    # the exact check behind the fast one: colons inside strings, repeats in nested objects, whitespace before colons
    assert _json_body(b'{"a": "12:30", "b" :1}') == {"a": "12:30", "b": 1}
    for repeated in (b'{"a": "x:y", "a": 1}', b'{"rows": [{"a": 1, "a"\n: 2}]}'):
        with pytest.raises(_RepeatedKey):
            _json_body(repeated)
    log.close()


@pytest.mark.parametrize(
    "content_type, status",
    [
        ("text/plain", 415),
        (None, 415),
        ("application/x-www-form-urlencoded", 415),  # what curl -d sends without -H
        ("application/json; charset=utf-8", 200),
        ("application/vnd.api+json", 200),
    ],
)
def test_only_a_json_body_is_read(churn, content_type, status):
    settings, row = churn
    client, log = _client(settings)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/predict", content=json.dumps(row).encode(), headers=headers)
    assert answer.status_code == status, answer.text
    if status == 415:
        assert answer.json()["detail"][0]["loc"] == ["header", "content-type"]
    log.close()
    assert read_prediction_log(settings.prediction_log_dir)["status"].tolist() == [status]  # refusals are logged too


def test_openapi_says_the_request_is_strict(churn):
    settings, _ = churn
    client, log = _client(settings)
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    charges = json.dumps(schemas["Row"]["properties"]["monthly_charges"])
    assert '"type": "number"' in charges and "string" not in charges
    assert schemas["PredictRequest"]["description"].startswith("Strict types")
    log.close()


def test_a_value_beyond_the_training_range_is_warned_about_in_the_api_predict_and_the_log(churn, tmp_path):
    settings, row = churn
    trained = ModelPredictor.load("churn__fast", settings).schema["monthly_charges"]["trained"]
    assert 0 < trained[0] < trained[1] < 1000  # what the training rows held, saved with the model
    client, log = _client(settings)
    answer = client.post("/predict", json={"rows": [{**row, "monthly_charges": 1e308}]})
    assert answer.status_code == 200 and [w.split(":")[0] for w in answer.json()["warnings"]] == ["monthly_charges"]
    assert "outside the training data's range" in answer.json()["warnings"][0]
    log.close()
    logged = read_prediction_log(settings.prediction_log_dir)
    assert logged["warnings"].iloc[0] == answer.json()["warnings"]
    source = pd.DataFrame([{**row, "monthly_charges": 1e308}])
    source.to_csv(tmp_path / "in.csv", index=False)
    scored = runner.invoke(
        cli, ["predict", "--model", "churn__fast", "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.parquet")]
    )
    assert scored.exit_code == 0 and "outside the training data's range" in scored.output, scored.output


def test_the_bearer_scheme_is_case_insensitive(churn):
    settings, row = churn
    keys = parse_api_keys(f"app predict {key_digest('s3cret')}", "test")
    client, log = _client(settings, keys)
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.post("/predict", json=row, headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
    assert client.post("/predict", json=row, headers={"Authorization": "Basic s3cret"}).status_code == 401
    log.close()


def test_key_hashes_are_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", "secrets/api_keys"], cwd=REPO)
    assert ignored.returncode == 0, "secrets/ is not git-ignored"


def test_a_body_over_the_limit_is_recorded_in_the_prediction_log(churn):
    settings, _ = churn
    client, log = _client(settings, serve_max_body_mb=1)
    answer = client.post("/predict", content=b'{"rows": [' + b" " * (2 << 20) + b"]}", headers=JSON)
    assert answer.status_code == 413
    log.close()
    logged = read_prediction_log(settings.prediction_log_dir)
    assert logged["status"].tolist() == [413] and "larger than 1 MB" in logged["error"].iloc[0]


# --- slow and broken clients, on the real server ---


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _answer(s: socket.socket, data: bytes = b"") -> bytes:
    "Send `data` (the server may close first), then read until the server closes; what it said, or b'' for a reset."
    with contextlib.suppress(OSError):
        s.sendall(data)
    out = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            out += chunk
    s.close()
    return out


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10).text


LIMITS = {
    "ML_PROJECT_SERVE_HEAD_TIMEOUT_SECONDS": "2",
    "ML_PROJECT_SERVE_BODY_TIMEOUT_SECONDS": "2",
    "ML_PROJECT_SERVE_MAX_HEADERS": "50",
    "ML_PROJECT_PREDICTION_LOG_FLUSH_MS": "50",
}


@pytest.fixture
def service(churn):
    "`ml-project serve` on 127.0.0.1 with short deadlines, and a row of its model's data."
    settings, row = churn
    served = ServiceProcess(settings, env=LIMITS).wait()
    yield served, row
    served.stop()


def test_oversized_and_overlong_headers_are_refused_before_they_are_read(service):
    served, _ = service
    host = b"Host: 127.0.0.1\r\n"
    huge = _answer(
        _connect(served.port), b"GET /health HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * (20 << 20) + b"\r\n\r\n"
    )
    many = _answer(_connect(served.port), b"GET /health HTTP/1.1\r\n" + host + b"X-A: b\r\n" * 20_000 + b"\r\n")
    counted = _answer(_connect(served.port), b"GET /health HTTP/1.1\r\n" + host + b"X-A: b\r\n" * 60 + b"\r\n")
    for said in (huge, many, counted):  # 431, or the connection closed: never the 200 it got before
        assert said == b"" or said.startswith(b"HTTP/1.1 431"), said[:200]
    assert counted.startswith(b"HTTP/1.1 431") and b"more than 50 header lines" in counted
    fine = _answer(
        _connect(served.port), b"GET /health HTTP/1.1\r\n" + host + b"X-A: b\r\n" * 20 + b"Connection: close\r\n\r\n"
    )
    assert fine.startswith(b"HTTP/1.1 200")
    assert 'mlp_requests_total{endpoint="other",status="431"}' in _metrics(served.url)


def test_slow_clients_are_cut_off_and_others_answered_with_no_5xx(service):
    served, row = service
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    body = json.dumps({"rows": [row]}).encode()
    stalled_heads = [_connect(served.port) for _ in range(30)]
    stalled_bodies = [_connect(served.port) for _ in range(30)]
    idle = [_connect(served.port) for _ in range(10)]  # connect and say nothing
    started = time.monotonic()
    for s in stalled_heads:
        s.sendall(head)  # the head never ends
    for s in stalled_bodies:
        s.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])  # the body never ends
    answered = []
    with httpx.Client(base_url=served.url, timeout=10) as client:
        while time.monotonic() - started < 3.5:  # past both 2 s deadlines
            answered.append(client.post("/predict", json={"rows": [row]}).status_code)
    heads, bodies = [_answer(s) for s in stalled_heads], [_answer(s) for s in stalled_bodies]
    assert all(_answer(s) == b"" for s in idle)  # closed, with nothing to say
    assert time.monotonic() - started < 8  # each was closed by the server, not left hanging
    assert set(answered) == {200} and len(answered) > 10
    assert all(h.startswith(b"HTTP/1.1 408") for h in heads), heads[0][:200]
    assert all(b.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in b for b in bodies), bodies[0][:200]
    metrics = _metrics(served.url)
    assert 'status="5' not in metrics and 'kind="internal"' not in metrics, metrics
    time.sleep(0.3)  # the log's flush
    statuses = read_prediction_log(served.settings.prediction_log_dir)["status"].value_counts().to_dict()
    assert statuses.get(408) == 30 and not any(s >= 500 for s in statuses), statuses


def test_a_client_that_hangs_up_mid_body_is_a_499_not_an_error_of_ours(service):
    served, row = service
    body = json.dumps({"rows": [row]}).encode()
    for _ in range(5):
        s = _connect(served.port)
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.1)
        s.close()
    time.sleep(0.5)
    metrics = _metrics(served.url)
    assert 'mlp_requests_total{endpoint="/predict",status="499"} 5.0' in metrics, metrics
    assert 'status="5' not in metrics and 'kind="internal"' not in metrics
    log = (served.settings.root / f"serve-{served.port}.log").read_text()
    assert "ClientDisconnect" not in log and "Traceback" not in log, log[-2000:]
    time.sleep(0.3)
    statuses = read_prediction_log(served.settings.prediction_log_dir)["status"].tolist()
    assert statuses.count(499) == 5, statuses


def test_connections_beyond_the_cap_are_refused_clearly(churn):
    settings, row = churn
    served = ServiceProcess(settings, env={**LIMITS, "ML_PROJECT_SERVE_MAX_CONNECTIONS": "20"}).wait()
    try:
        held = [_connect(served.port) for _ in range(25)]
        time.sleep(0.2)
        refused = _answer(_connect(served.port), b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 503") and b"at its limit of 20 connections" in refused, refused[:300]
        assert b"retry-after: 1" in refused
        for s in held:
            s.close()
        time.sleep(0.2)
        assert httpx.post(f"{served.url}/predict", json=row, timeout=10).status_code == 200
        assert 'mlp_errors_total{kind="over_capacity"} 1.0' in _metrics(served.url)
    finally:
        served.stop()


# --- checked before any run starts ---


def _rare_csv(path, rows: int, positives: float, seed: int = 0):
    "A table of one's own with a rare positive class: a few informative numbers and a category."
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    risk = x[:, 0] + 0.7 * x[:, 1] + rng.normal(scale=0.6, size=rows)
    frame = pd.DataFrame(
        {
            "account": np.arange(rows),
            "usage": x[:, 0].round(4),
            "tickets": (x[:, 1] * 3 + 5).round(2),
            "age": (x[:, 2] * 10 + 40).round(1),
            "region": rng.choice(["north", "south", "east"], rows),
            "left": np.where(risk > np.quantile(risk, 1 - positives), "yes", "no"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def test_a_file_too_small_to_split_is_refused_before_a_run_is_opened(project):
    source = _rare_csv(project.root / "data" / "external" / "tiny.csv", 2, 0.5)
    (project.configs_dir / "tiny.yaml").write_text(
        "experiment: {name: tiny, problem: tiny}\n"
        f"data: {{source: {source}, target: left, positive_class: 'yes', id_column: account}}\n"
        "model: {type: random_forest}\n"
    )
    result = runner.invoke(cli, ["train", "-c", str(project.configs_dir / "tiny.yaml")])
    assert result.exit_code == 1 and "has 2 rows" in result.output and "needs at least" in result.output, result.output
    client = MlflowClient(project.mlflow_tracking_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs == []  # nothing was opened, so nothing is left FAILED


# --- numbers a user can trust on an imbalanced target; a drafted config tunes ---


def test_a_rare_target_leads_with_the_metrics_at_its_threshold(project):
    source = _rare_csv(project.root / "data" / "external" / "rare.csv", 1400, 0.05)
    assert runner.invoke(cli, ["init-config", str(source), "--target", "left"]).exit_code == 0
    config = project.configs_dir / "rare.yaml"
    text = config.read_text()
    assert 'positive_class: "yes"' in text
    config.write_text(text.replace("params: {n_estimators: 300}", "params: {n_estimators: 50}"))
    result = runner.invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if "cv_mean" in line) :]
    f1 = next(line for line in table if line.startswith("f1 ") and "at 0.5" not in line)
    f1_at_half = next(line for line in table if line.startswith("f1 at 0.5"))
    assert table.index(f1) < table.index(f1_at_half)  # the thresholded one leads
    cv_mean, _, valid, test = (float(v) for v in f1.split()[1:])
    assert min(cv_mean, valid, test) > 0.05, f1  # at the threshold: 0.0000 at 0.5 before
    assert "decision threshold" in result.output and "chosen on validation for f1" in result.output
    client = MlflowClient(project.mlflow_tracking_uri)
    run = client.search_runs([client.get_experiment_by_name("rare").experiment_id])[0]
    assert run.data.metrics["test_f1_at_threshold"] > 0.05 and "cv_f1_at_threshold_mean" in run.data.metrics


def test_class_weight_is_a_checked_option(project):
    source = _rare_csv(project.root / "data" / "external" / "weighed.csv", 600, 0.1)
    assert runner.invoke(cli, ["init-config", str(source), "--target", "left"]).exit_code == 0
    config = project.configs_dir / "weighed.yaml"
    drafted = yaml.safe_load(config.read_text())
    drafted["model"] = {"type": "xgboost", "class_weight": "balanced", "params": {"n_estimators": 30}}
    del drafted["tuning"]  # a random forest's space
    config.write_text(yaml.safe_dump(drafted))
    trained = runner.invoke(cli, ["train", "-c", str(config)])
    assert trained.exit_code == 0, trained.output
    pipeline, metadata = load_model(project.models_dir / "weighed__fast", project)
    assert metadata["config"]["model"]["class_weight"] == "balanced" and pipeline[-1].class_weight == "balanced"
    drafted["model"]["class_weight"] = "heavy"
    config.write_text(yaml.safe_dump(drafted))
    refused = runner.invoke(cli, ["train", "-c", str(config)])
    assert refused.exit_code == 1 and "model.class_weight" in refused.output and "balanced" in refused.output


def test_a_drafted_config_tunes_with_no_edits(project):
    source = _rare_csv(project.root / "data" / "external" / "renewals.csv", 500, 0.3)
    assert runner.invoke(cli, ["init-config", str(source), "--target", "left"]).exit_code == 0
    space = yaml.safe_load((project.configs_dir / "renewals.yaml").read_text())["tuning"]["search_space"]
    assert space["max_depth"]["high"] == 9 and space["min_samples_leaf"]["high"] == 10  # sized to 500 rows
    tuned = runner.invoke(cli, ["tune", "-c", str(project.configs_dir / "renewals.yaml"), "--trials", "2"])
    assert tuned.exit_code == 0, tuned.output
