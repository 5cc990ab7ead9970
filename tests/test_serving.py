"""The prediction service: every endpoint in-process and as a real process on localhost, keys, TLS, the prediction log,
hot reload under load, kill -9, a fuzzed OpenAPI schema, the OpenAPI page in Chromium, and the Prometheus rules."""

import collections
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import ServiceProcess as Service
from conftest import chromium_browser, free_port
from conftest import in_process_client as _client
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app as cli
from ml_project.errors import ConfigError, ModelIntegrityError
from ml_project.serve.app import create_app, serve
from ml_project.serve.keys import add_api_key, parse_api_keys
from ml_project.serve.log import PredictionLog, read_prediction_log

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
runner = CliRunner()


def test_every_endpoint_in_process(churn):
    settings, row = churn
    client, log = _client(settings)
    one = client.post("/predict", json=row, headers={"X-Request-ID": "req-1"})
    assert one.status_code == 200 and one.headers["X-Request-ID"] == "req-1"
    body = one.json()
    assert body["model"] == "churn__fast" and body["version"] == "1" and 0 < body["threshold"] < 1
    assert body["predictions"][0]["prediction"] in ("Yes", "No") and 0 <= body["predictions"][0]["probability"] <= 1
    batch = client.post("/predict", json={"rows": [row] * 5}).json()
    assert len(batch["predictions"]) == 5 and batch["predictions"][0] == body["predictions"][0]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json()["version"] == "1"
    meta = client.get("/metadata").json()
    assert (
        meta["classes"] == ["No", "Yes"]
        and meta["data_md5"] == "694734346df56bad2a902c81b51c6fb4"
        and meta["example"] == row
    )
    metrics = client.get("/metrics").text
    assert 'mlp_requests_total{endpoint="/predict",status="200"}' in metrics and "mlp_predictions_total" in metrics
    assert "mlp_request_seconds_bucket" in metrics and 'mlp_model_info{name="churn__fast",version="1"} 1.0' in metrics
    schema = client.get("/openapi.json").json()
    contract = schema["components"]["schemas"]["Row"]["properties"]["contract"]
    assert {"Month-to-month", "One year", "Two year"} <= set(json.dumps(contract).split('"')), contract
    assert client.get("/docs").status_code == 200 and "swagger-ui" in client.get("/docs").text
    log.close()
    logged = read_prediction_log(settings.prediction_log_dir)
    assert logged.loc[logged["request_id"] == "req-1", "outputs.prediction"].tolist() == [
        body["predictions"][0]["prediction"]
    ]
    assert len(logged) == 6 and logged["inputs.tenure"].notna().all()


@pytest.mark.parametrize(
    "change, status, where",
    [
        ({"drop": "tenure"}, 422, ["body", "tenure"]),
        ({"set": ("tenure", "a year")}, 422, ["body", "tenure"]),
        ({"set": ("contract", "Lifetime")}, 422, ["body", "contract"]),
        ({"set": ("colour", "red")}, 422, ["body", "colour"]),
        ({"raw": b'{"rows": [}'}, 422, ["body"]),
        ({"raw": b'{"rows": []}'}, 422, ["body", "rows"]),
        ({"rows": 1001}, 413, ["body", "rows"]),
    ],
)
def test_bad_requests_get_per_field_errors(churn, change, status, where):
    settings, row = churn
    client, log = _client(settings)
    if "raw" in change:
        response = client.post("/predict", content=change["raw"], headers={"Content-Type": "application/json"})
    elif "rows" in change:
        response = client.post("/predict", json={"rows": [row] * change["rows"]})
    else:
        bad = {k: v for k, v in row.items() if k != change.get("drop")}
        if "set" in change:
            bad[change["set"][0]] = change["set"][1]
        response = client.post("/predict", json=bad)
    assert response.status_code == status, response.text
    assert any(e["loc"][: len(where)] == where for e in response.json()["detail"]), response.json()
    log.close()  # the refusal is one record of the log, so monitoring can count refused requests
    logged = read_prediction_log(settings.prediction_log_dir)
    assert logged["status"].tolist() == [status] and logged["request_id"].tolist() == [response.headers["X-Request-ID"]]
    assert logged.loc[0, "error"] == response.json()["detail"][0]["msg"][:200] and logged["model"].tolist() == [
        "churn__fast"
    ]


def test_a_body_over_the_limit_is_refused_before_it_is_read(churn):
    settings, row = churn
    client, _ = _client(settings, serve_max_body_mb=0)
    response = client.post("/predict", json={"rows": [row]})
    assert response.status_code == 413 and "larger than 0 MB" in response.text


def test_keys_and_roles(churn, tmp_path):
    settings, row = churn
    keys_file = tmp_path / "keys"
    app_key, admin_key = add_api_key(keys_file, "app", ["predict"]), add_api_key(keys_file, "ops", ["predict", "admin"])
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600" and app_key not in keys_file.read_text()
    client, log = _client(settings, keys=parse_api_keys(keys_file.read_text(), "keys"))
    assert client.post("/predict", json=row).status_code == 401
    assert client.post("/predict", json=row, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.post("/predict", json=row, headers={"Authorization": f"Bearer {app_key}"})
    assert ok.status_code == 200
    assert client.get("/metadata").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {app_key}"}).status_code == 403
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    log.close()
    logged = read_prediction_log(settings.prediction_log_dir)
    assert logged["key_id"].tolist() == ["app"] and logged["request_id"].tolist() == [ok.json()["request_id"]]
    assert app_key not in "".join(p.read_text() for p in settings.prediction_log_dir.rglob("*.jsonl"))


def test_personal_columns_are_hashed_or_dropped_in_the_log(tmp_path):
    for mode, expected in (("hash", 16), ("drop", None)):
        log = PredictionLog(tmp_path / mode, flush_ms=20, pii=["email"], pii_mode=mode)
        log.write(
            [
                {
                    "request_id": "r",
                    "time": "2026-01-01T00:00:00+00:00",
                    "inputs": {"email": "a@b.c", "age": 3},
                    "outputs": {},
                }
            ]
        )
        log.close()
        table = read_prediction_log(tmp_path / mode)
        assert table.loc[0, "inputs.age"] == 3
        assert (len(table.loc[0, "inputs.email"]) if expected else "inputs.email" not in table) in (expected, True)


def test_a_public_address_needs_keys_and_a_tampered_model_does_not_start(churn):
    settings, _ = churn
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0 without API keys"):
        serve("churn__fast", settings, host="0.0.0.0")
    folder = settings.models_dir / "churn_xgboost__fast"
    (folder / "model.joblib").write_bytes((folder / "model.joblib").read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match="does not match its recorded hash"):
        create_app(str(folder), settings)
    result = runner.invoke(cli, ["serve", "--model", str(folder), "--port", str(free_port())])
    assert result.exit_code == 1 and "does not match its recorded hash" in result.output


def test_openapi_fuzzed_never_answers_5xx(churn):
    # Schemathesis draws requests from the OpenAPI schema (valid and not) for every operation: none may get a 5xx.
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    settings, _ = churn
    client, _ = _client(settings)
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures, calls = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        # valid requests, and (where there is something to break: a body) requests that break the schema on purpose
        for mode in GenerationMode if len(operation.body) else [GenerationMode.POSITIVE]:

            @hypothesis_settings(
                max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
            )  # the same cases on every run: CI is not a lottery
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call()
                calls.append((operation.label, mode.value, response.status_code))
                if response.status_code >= 500:
                    failures.append((operation.label, case.body, response.status_code))

            check()
    assert not failures, failures[:3]
    predict = [status for label, _, status in calls if label == "POST /predict"]
    assert len(predict) > 60 and 200 in predict and 422 in predict, collections.Counter(predict)


# --- the real thing: `ml-project serve` as a process on localhost ---


def test_the_service_as_a_process_answers_and_flushes_its_log_on_stop(churn):
    settings, row = churn
    service = Service(settings).wait()
    with httpx.Client(base_url=service.url) as client:
        answer = client.post("/predict", json={"rows": [row]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["prediction"] in ("Yes", "No")
    service.stop(signal.SIGTERM)  # graceful: the log is flushed on the way out
    logged = read_prediction_log(settings.prediction_log_dir)
    assert answer.json()["request_id"] in logged["request_id"].tolist()
    assert {oct(p.stat().st_mode & 0o777) for p in settings.prediction_log_dir.rglob("*.jsonl")} == {"0o600"}


def test_tls_with_a_self_signed_certificate(churn, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    settings, row = churn
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    service = Service(
        settings, args=["--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")]
    )
    service.wait(verify=str(tmp_path / "cert.pem"))
    try:
        answer = httpx.post(f"{service.url}/predict", json=row, verify=str(tmp_path / "cert.pem"))
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{service.port}/health", timeout=3)  # plain HTTP is not served
    finally:
        service.stop()


def test_hot_reload_to_a_new_champion_under_load(churn, tmp_path):
    settings, row = churn
    assert runner.invoke(cli, ["train", "-c", str(settings.configs_dir / "churn_logistic.yaml")]).exit_code == 0
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias("churn__fast", "champion", "1")
    keys_file = tmp_path / "keys"
    admin = add_api_key(keys_file, "ops", ["predict", "admin"])
    service = Service(
        settings, env={"ML_PROJECT_API_KEYS": f"file:{keys_file}", "ML_PROJECT_SERVE_RELOAD_SECONDS": "3600"}
    ).wait()
    headers = {"Authorization": f"Bearer {admin}"}
    versions, failures, stop = [], [], threading.Event()

    def load():
        with httpx.Client(base_url=service.url, headers=headers) as http:
            while not stop.is_set():
                response = http.post("/predict", json=row)
                (
                    versions.append(response.json()["version"])
                    if response.status_code == 200
                    else failures.append(response.status_code)
                )

    workers = [threading.Thread(target=load) for _ in range(4)]
    try:
        for w in workers:
            w.start()
        time.sleep(1)
        client.set_registered_model_alias("churn__fast", "champion", "2")
        reload = httpx.post(f"{service.url}/admin/reload", headers=headers, timeout=60)
        assert reload.status_code == 200 and reload.json()["changed"] and reload.json()["version"] == "2"
        time.sleep(1)
    finally:
        stop.set()
        for w in workers:
            w.join()
        service.stop()
    assert not failures and versions[0] == "1" and versions[-1] == "2" and len(versions) > 20
    assert versions == sorted(versions)  # no request went back to the old model after the switch


def test_a_failed_reload_keeps_the_old_model_and_says_so(churn):
    settings, row = churn
    assert runner.invoke(cli, ["train", "-c", str(settings.configs_dir / "churn_logistic.yaml")]).exit_code == 0
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias("churn__fast", "champion", "1")
    http, log = _client(settings)
    client.set_model_version_tag("churn__fast", "2", "sha256", "0" * 64)  # v2's file no longer matches its record
    client.set_registered_model_alias("churn__fast", "champion", "2")
    reload = http.post("/admin/reload")
    assert reload.status_code == 503 and "the registry recorded" in reload.json()["reload_error"]
    ready = http.get("/ready").json()
    assert ready["version"] == "1" and "the registry recorded" in ready["reload_error"]
    assert http.post("/predict", json=row).json()["version"] == "1"
    log.close()


def test_kill_9_loses_at_most_the_last_flush_and_the_log_reads_after_restart(churn):
    settings, row = churn
    service = Service(settings).wait()
    with httpx.Client(base_url=service.url) as client:
        first = [client.post("/predict", json=row).json()["request_id"] for _ in range(20)]
    time.sleep(settings.prediction_log_flush_ms / 1000 + 1)  # one flush interval: the bound on what a kill loses
    service.stop(signal.SIGKILL)
    again = Service(settings).wait()
    with httpx.Client(base_url=again.url) as client:
        second = [client.post("/predict", json=row).json()["request_id"] for _ in range(5)]
    again.stop()
    logged = read_prediction_log(settings.prediction_log_dir)["request_id"].tolist()
    assert set(first) <= set(logged) and set(second) <= set(logged)


def test_the_openapi_page_renders_in_chromium(churn):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium_browser()
    settings, _ = churn
    service = Service(settings).wait()
    try:
        browser.get(f"{service.url}/docs")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
        paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/predict", "/health", "/ready", "/metadata"} <= paths, paths
        shots = REPO / ".test-runs" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(shots / "service-docs.png"))
    finally:
        browser.quit()
        service.stop()


def test_prometheus_rules_check_and_pass_their_unit_tests(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool and not os.environ.get("CI"):
        pytest.skip("needs promtool (make prometheus)")
    folder = tmp_path / "prometheus"
    shutil.copytree(REPO / "deploy" / "prometheus", folder)
    (folder / "ml-project.key").write_text("a-key\n")  # the scrape config names it
    for args in (
        ["check", "rules", "rules.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "rules_test.yml"],
    ):
        done = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_observe_many_counts_as_observe_does():
    from prometheus_client import CollectorRegistry, Histogram

    from ml_project.serve.log import observe_many

    registry = CollectorRegistry()
    one, many = (Histogram(name, "test", buckets=[0.1, 0.5, 0.9], registry=registry) for name in ("one", "many"))
    values = [0.0, 0.1, 0.1000001, 0.5, 0.7, 0.9, 0.95, 2.0, float("nan"), 0.3, 0.2, 0.05]
    for v in values:
        if v == v:
            one.observe(v)
    observe_many(many, values)

    def samples(name):
        return {
            (s.name.removeprefix(name), tuple(s.labels.items())): s.value
            for m in registry.collect()
            if m.name == name
            for s in m.samples
            if not s.name.endswith("_created")
        }

    ones, manys = samples("one"), samples("many")
    assert ones.pop(("_sum", ())) == pytest.approx(manys.pop(("_sum", ())))  # summed in another order
    assert ones == manys and manys[("_count", ())] == 11
