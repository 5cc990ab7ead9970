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
