"""The service's container image (deploy/Containerfile, ml_project.deploy.image): built from a registered champion,
run as production runs it (read-only root, non-root, key from the environment, 127.0.0.1 only), answering as the
in-process predictor does; a tampered model is refused at start; the serving lock is the full lock's subset.

The build needs podman (or docker) and, for the base image, mmdebstrap (`make containers` installs them); without an
engine these tests are skipped and say so. The base image is made once per machine and kept (about 25 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from conftest import REPO, free_port

sys.path.insert(0, str(REPO / "deploy"))
from serve_lock import pins  # the lock reader that writes the serving locks

from ml_project.deploy import image
from ml_project.errors import ConfigError, ServiceError
from ml_project.serve.keys import key_digest
from ml_project.serve.predictor import ModelPredictor

# as the Makefile sets them: podman's settings for hosts like ours, and buildah's chroot isolation inside a sandbox
os.environ.setdefault("CONTAINERS_CONF", str(REPO / "deploy" / "podman" / "containers.conf"))
os.environ.setdefault("BUILDAH_ISOLATION", "chroot")
KEY = "image-test-key-0123456789"
REPOSITORY = f"ml-project-test-{os.getpid()}"  # a tag of its own: another run on this machine builds beside it
KEYS_ENV = {"ML_PROJECT_API_KEYS": "env:ML_PROJECT_KEYS", "ML_PROJECT_KEYS": f"ci predict {key_digest(KEY)}"}


def test_the_serving_locks_are_the_full_locks_versions_without_training():
    full = pins(REPO / "requirements.lock")
    for name in ("requirements-serve.lock", "requirements-serve-torch.lock", "requirements-serve-fetch.lock"):
        serve = pins(REPO / name)
        assert {n: v for n, v in serve.items() if n != "xgboost-cpu"} == {
            n: full[n] for n in serve if n != "xgboost-cpu"
        }, name
        assert serve["xgboost-cpu"] == full["xgboost"]  # the same module and version, CPU only
        for training_only in ("jupyterlab", "sphinx", "dvc", "optuna", "papermill", "nbdev", "matplotlib", "xgboost"):
            assert training_only not in serve, (name, training_only)
    assert "torch" not in pins(REPO / "requirements-serve.lock")
    assert {"torch", "skorch"} <= set(pins(REPO / "requirements-serve-torch.lock"))
    assert "mlflow-skinny" in pins(REPO / "requirements-serve-fetch.lock")
    assert "mlflow-skinny" not in pins(REPO / "requirements-serve-torch.lock")
    tracking = pins(
        REPO / "requirements-tracking.lock"
    )  # the stack's MLflow server: the full lock's versions, no project
    assert tracking == {n: full[n] for n in tracking} and {"mlflow", "psycopg"} <= set(tracking)
    assert not {"torch", "xgboost", "jupyterlab", "optuna"} & set(tracking)


def test_the_lock_follows_the_model_family_read_from_metadata():
    xgb = {"config": {"model": {"type": "xgboost"}}}
    mlp = {"config": {"model": {"type": "mlp"}}}
    blend = {
        "config": {"model": {"type": "ensemble", "params": {"members": [{"family": "xgboost"}, {"family": "mlp"}]}}}
    }
    assert image.serving_lock(xgb, REPO).name == "requirements-serve.lock"
    assert image.serving_lock(mlp, REPO).name == "requirements-serve-torch.lock"
    assert image.serving_lock(blend, REPO).name == "requirements-serve-torch.lock"
    assert image.serving_lock(None, REPO).name == "requirements-serve-fetch.lock"
    assert image.image_tag("churn", "3") == "ml-project/churn:3"
    assert image.image_tag("My_Model", None, "ab" * 32) == "ml-project/my_model:sha-abababababab"
    assert image.image_tag("churn", "3", repository="registry.example.com/team") == "registry.example.com/team/churn:3"


def test_the_built_wheel_holds_every_module(tmp_path):
    "The image installs the package from its wheel: every module of the source tree must be in it."
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         str(REPO), "-w", str(tmp_path)],
        check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    import zipfile

    (wheel,) = tmp_path.glob("ml_project-*.whl")
    inside = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    source = {str(p.relative_to(REPO)) for p in (REPO / "ml_project").rglob("*.py")}
    assert source <= inside, sorted(source - inside)


@pytest.fixture(scope="module")
def engine():
    try:
        engine = image.container_engine()
    except (ServiceError, ConfigError) as e:
        pytest.skip(f"no container engine: {e}")
    if engine == "podman" and subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        pytest.skip("podman is installed but cannot run here (see deploy/podman/containers.conf)")
    return engine


@pytest.fixture
def built(trained_churn, engine):
    "The churn__fast champion's image, built from the registry as `make image MODEL=churn__fast` builds it."
    context = image.prepare_context("churn__fast", trained_churn, repository=REPOSITORY)
    tag = image.build_image(context, engine=engine)
    yield trained_churn, context, tag
    subprocess.run([engine, "rmi", "-f", tag], capture_output=True)


def test_the_image_answers_as_the_predictor_does(built, engine):
    settings, context, tag = built
    assert context.model["version"] == "1" and context.lock.name == "requirements-serve.lock"
    assert tag == f"{REPOSITORY}/churn__fast:1"
    labels = json.loads(subprocess.run([engine, "image", "inspect", "--format", "{{json .Labels}}", tag],
                                       capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert labels["io.ml-project.model.sha256"] == context.model["sha256"]
    assert image.image_size(tag, engine) < 500e6  # the goal for an XGBoost champion

    predictor = ModelPredictor.load("churn__fast", settings)
    row = predictor.metadata["example"]
    rows = [row, {**row, "tenure": 1, "contract": "Month-to-month"}, {**row, "total_charges": None}]
    expected = predictor.predict(rows).to_records()

    container = image.run_container(tag, free_port(), env=KEYS_ENV, engine=engine)
    try:
        image.wait_ready(container, timeout=60)
        assert httpx.post(f"{container.url}/predict", json={"rows": rows}).status_code == 401  # keys are required
        answer = httpx.post(f"{container.url}/predict", json={"rows": rows}, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["model"], body["version"]) == ("churn__fast", "1")
        for got, want in zip(body["predictions"], expected, strict=True):
            assert got["prediction"] == want["prediction"]
            assert got["probability"] == pytest.approx(want["probability"], abs=1e-9)
        user = subprocess.run([engine, "exec", container.name, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001"  # not root
        read_only = subprocess.run([engine, "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", container.name],
                                   capture_output=True, text=True)  # fmt: skip
        assert read_only.stdout.strip() == "true"  # and the service runs on it
        logged = subprocess.run([engine, "exec", container.name, "ls", "/var/lib/ml-project/predictions"],
                                capture_output=True, text=True)  # fmt: skip
        assert (
            logged.returncode == 0
        )  # the prediction log's folder, on the volume        assert KEY not in subprocess.run([engine, "image", "inspect", tag], capture_output=True, text=True).stdout
        if engine == "podman":  # the image's HEALTHCHECK, run now (podman schedules it with systemd, absent here)
            assert subprocess.run(["podman", "healthcheck", "run", container.name], capture_output=True).returncode == 0
    finally:
        code = container.stop()
    assert code == 0  # SIGTERM drained and exited cleanly


def test_a_tampered_model_in_the_image_is_refused_at_start(built, engine):
    tag = built[2]
    folder = f"{image.IMAGE_MODELS}/registry/churn__fast/v1"
    tamper = f"cp -r {folder} /tmp/m && printf x >> /tmp/m/model.joblib && exec ml-project serve --model /tmp/m"
    container = image.run_container(
        tag, free_port(), env={**KEYS_ENV, "ML_PROJECT_MODELS_DIR": "/tmp"}, engine=engine,
        args=("--", "sh", "-c", tamper),
    )  # fmt: skip
    try:
        with pytest.raises(ServiceError, match="does not match its recorded hash"):
            image.wait_ready(container, timeout=60)
        assert container.exit_code() == 1
    finally:
        container.stop()
