"""The README says what the home page says (it is generated from nbs/index.ipynb), and the site shows only outputs
of careful runs of the notebooks as they stand."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent


def _prepare():
    spec = importlib.util.spec_from_file_location("prepare", REPO / "docs" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare


def test_readme_is_generated_from_the_home_page():
    assert (REPO / "README.md").read_text() == _prepare().readme_text(), "README.md is stale: run `make readme`"


def test_every_notebook_carries_the_mark_of_a_careful_run_of_its_code():
    prepare = _prepare()
    for path in sorted((REPO / "nbs").glob("*.ipynb")):
        mark = prepare.careful_outputs(path, nbformat.read(path, as_version=4))
        assert mark["mode"] == "careful" and mark["executed"], path.name


def test_the_build_refuses_fast_outputs_and_outputs_of_older_code(tmp_path):
    prepare = _prepare()
    path = REPO / "nbs" / "20_train.training.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "cross_validate_model(config, X_train" in c.source)
    changed = nbformat.from_dict(nb)
    changed.cells[nb.cells.index(code)].source += "\n# an edit after the run"
    with pytest.raises(
        SystemExit,
        match=r"20_train.training.ipynb: its code changed after its careful run .*make docs-outputs NB=20_train.training",
    ):
        prepare.careful_outputs(path, changed)
    fast = nbformat.from_dict(nb)
    fast.cells[nb.cells.index(code)].outputs = [
        nbformat.v4.new_output("stream", text="registered churn__fast v32 as challenger\n")
    ]
    with pytest.raises(SystemExit, match="an output shows a fast-mode run \\('n__fast'\\)"):
        prepare.careful_outputs(path, fast)
    unmarked = nbformat.from_dict(nb)
    unmarked.metadata.pop("ml_project")
    with pytest.raises(SystemExit, match="not marked as a careful-mode run"):
        prepare.careful_outputs(path, unmarked)
