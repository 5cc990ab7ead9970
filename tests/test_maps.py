"""The README's folder map, the architecture page's stage table and the phases' faces are generated from the notebooks and
modules (`docs/maps.py`), so they cannot go stale: a notebook added, renamed or retitled without `make maps` fails here."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _maps():
    spec = importlib.util.spec_from_file_location("maps", REPO / "docs" / "maps.py")
    maps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maps)
    return maps


def test_maps_match_the_notebooks():
    assert _maps().stale() == [], "run `make maps`"


def test_the_folder_map_names_every_notebook_and_its_module():
    maps = _maps()
    text = maps.folder_map()
    for nb in maps.notebooks():
        assert f"{nb['stem']}.ipynb" in text and maps._module_path(nb["module"]) in text
    readme = (REPO / "README.md").read_text()
    assert text in readme, "README.md is stale: run `make readme`"


def test_a_renamed_notebook_makes_the_maps_stale(tmp_path, monkeypatch):
    maps = _maps()
    (tmp_path / "nbs").mkdir()
    for path in (REPO / "nbs").glob("*.ipynb"):
        (tmp_path / "nbs" / path.name).write_bytes(path.read_bytes())
    first = tmp_path / "nbs" / "05_eda.ipynb"
    nb = json.loads(first.read_text())
    nb["cells"][0]["source"] = ["# A first look\n", "\n", "> renamed"]
    first.write_text(json.dumps(nb))
    monkeypatch.setattr(maps, "NBS", tmp_path / "nbs")
    assert "A first look" in maps.folder_map() and "renamed" in maps.stage_table()
    assert any(p.endswith(("index.ipynb", "architecture.md")) for p in maps.stale())


def test_every_module_has_a_command_or_role():
    maps = _maps()
    assert [nb["module"] for nb in maps.notebooks() if nb["module"] not in maps.COMMANDS] == []
