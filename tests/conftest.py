"""Shared fixtures: a throwaway project root, so tests never touch the real data/raw, mlflow.db or models/."""
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ml_project.config import get_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path, monkeypatch):
    "A copy of the project's settings, configs, notebooks and raw data in a temporary root, selected via ML_PROJECT_ROOT."
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.ini", root)
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "nbs", root / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for f in (REPO / "data" / "raw").glob("*.csv*"):
        shutil.copy(f, raw / f.name)
    for key in [k for k in os.environ if k.startswith("ML_PROJECT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ML_PROJECT_ROOT", str(root))
    monkeypatch.setenv("ML_PROJECT_MODE", "fast")
    return get_settings()


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def finish(*processes, timeout: float = 300) -> list[str]:
    """Wait for commands started with stdout=PIPE and return their outputs, read together so no pipe fills up and stalls
    its writer. On a timeout each command still running dumps its threads' stacks (the CLI registers SIGUSR1 with
    faulthandler) and is killed, and the error shows every output, so a hang in CI says where it hung."""
    import signal, subprocess, threading, time
    outputs = [""] * len(processes)
    def read(i, p): outputs[i] = p.stdout.read()
    readers = [threading.Thread(target=read, args=(i, p), daemon=True) for i, p in enumerate(processes)]
    for r in readers: r.start()
    deadline = time.monotonic() + timeout
    for p in processes:
        try: p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired: pass
    hung = [p for p in processes if p.poll() is None]
    for p in hung: p.send_signal(signal.SIGUSR1)
    if hung: time.sleep(3)
    for p in hung: p.kill()
    for p in processes: p.wait()
    for r in readers: r.join(timeout=10)
    if hung:
        raise AssertionError(f"{len(hung)} command(s) still running after {timeout} s; outputs with stacks:\n" +
                             "\n-----\n".join(outputs))
    return outputs


def chromium_browser(width: int = 1300, height: int = 1800):
    "Headless Chromium under Selenium (Debian's chromium and chromium-driver), offline; skips the test when they are missing."
    import shutil
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver): pytest.skip("needs Debian's chromium and chromium-driver (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=DriverService(driver))
