"""The README says what the home page says: it is generated from nbs/index.ipynb."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_readme_is_generated_from_the_home_page():
    spec = importlib.util.spec_from_file_location("prepare", REPO / "docs" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec); spec.loader.exec_module(prepare)
    assert (REPO / "README.md").read_text() == prepare.readme_text(), "README.md is stale: run `make readme`"
