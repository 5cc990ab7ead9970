"""Notebooks are the source: exporting and cleaning them must change nothing, and papermill's tags must survive cleaning."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXPERIMENT_NOTEBOOKS = ["02_eda.ipynb", "06_training.ipynb", "06a_registry.ipynb", "07_evaluation.ipynb", "07a_experiment.ipynb",
                        "08_tuning.ipynb", "08a_predictor.ipynb", "08b_search.ipynb", "09_serving.ipynb", "10_monitoring.ipynb"]  # papermill runs these with parameters


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    "A copy of nbs/ and ml_project/ after nbdev-export and nbdev-clean."
    work = tmp_path_factory.mktemp("sync")
    shutil.copy(REPO / "pyproject.toml", work)
    shutil.copytree(REPO / "nbs", work / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(REPO / "ml_project", work / "ml_project", ignore=shutil.ignore_patterns("__pycache__"))
    for command in ("nbdev-export", "nbdev-clean"):
        done = subprocess.run([str(BIN / command)], cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return work


def _differences(a: Path, b: Path, pattern: str):
    names = sorted({p.relative_to(a) for p in a.glob(pattern)} | {p.relative_to(b) for p in b.glob(pattern)})
    return [str(n) for n in names if not (a / n).is_file() or not (b / n).is_file() or (a / n).read_bytes() != (b / n).read_bytes()]


def test_package_matches_notebooks(exported):
    diff = _differences(REPO / "ml_project", exported / "ml_project", "*.py")
    assert not diff, f"ml_project/ is not in sync with nbs/ (run nbdev-export): {diff}"


def test_notebooks_are_clean(exported):
    diff = _differences(REPO / "nbs", exported / "nbs", "*.ipynb")
    assert not diff, f"notebooks are not clean (run nbdev-clean): {diff}"


@pytest.mark.parametrize("name", EXPERIMENT_NOTEBOOKS)
def test_parameters_tag_survives_cleaning(exported, name):
    cells = json.loads((exported / "nbs" / name).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one 'parameters' cell after nbdev-clean, found {len(tagged)}"
    lines = [l for l in "".join(tagged[0]["source"]).splitlines() if l.strip()]
    assert all(l.count("=") == 1 for l in lines), "parameters cell: one literal assignment a line, no = in comments (papermill parses them)"
