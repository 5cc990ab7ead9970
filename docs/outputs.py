"""Re-execute the notebooks in careful mode, so the docs site shows the numbers of real runs of the shipped configs.

    python docs/outputs.py                  # make docs-outputs: every notebook, in lifecycle order, from a fresh store
    python docs/outputs.py 34_search.tune ...  # make docs-outputs NB=34_search.tune: these, on the store the last run left

Notebooks default to fast mode and test-sized runs, so `nbdev-test` stays quick; the site should not show those numbers.
Here each notebook runs with papermill in careful mode (`mode="careful"` where it has that parameter, plus
`ML_PROJECT_MODE=careful`; the tuning notebook with its config's trial count) inside a copy of the project under
`.docs-runs/project/`: its own MLflow store, models and prediction log, so the pages tell a clean story (versions 1, 2,
...) with the paths a user sees, never a developer's history. Open that store with
`mlflow ui --backend-store-uri sqlite:///.docs-runs/project/mlflow.db`.

The executed cells go back into `nbs/` (papermill's injected-parameters cell removed), `nbdev-clean` tidies them, and the
notebook is marked: `metadata.ml_project.outputs` holds the mode, the parameters, the MD5 of its code cells, the date and
the seconds it took. `docs/prepare.py` (so `make docs` and CI) refuses a notebook without a careful mark, or whose code
changed since the mark was made, or whose outputs show a fast-mode name.
"""

import argparse
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
WORK = ROOT / ".docs-runs" / "project"
PROJECT_FILES = ["settings.ini", "pyproject.toml", "requirements.lock", "configs", "data/raw", "nbs"]
# what differs from a notebook's defaults in a careful run; `mode` is set wherever a notebook has it
CAREFUL = {
    "34_search.tune": {
        "n_trials": None,
        "search_trials": None,
        "search_timeout": 120,
    },  # the config's 50 trials; a 2-minute search
}  # as many trials as two minutes allow


def code_md5(nb: nbformat.NotebookNode) -> str:
    "MD5 of a notebook's code cells' sources: what its outputs were computed from."
    return hashlib.md5("\n\x00".join(c.source for c in nb.cells if c.cell_type == "code").encode()).hexdigest()


def fresh_project(keep_store: bool = False):
    """A copy of the project's inputs (settings, configs, raw data, notebooks), with nothing run in it yet; or, with
    `keep_store`, the inputs copied over the last run's copy, whose MLflow store, models and studies stay."""
    if WORK.exists() and not keep_store:
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, WORK / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"), dirs_exist_ok=True
            )
        elif source.is_file():
            shutil.copy2(source, WORK / name)


def careful_env() -> dict:
    "The environment of a new user in careful mode: no ML_PROJECT_* overrides but the root and the mode."
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_") and k != "MPLBACKEND"}  # plots inline
    return {**env, "ML_PROJECT_ROOT": str(WORK), "ML_PROJECT_MODE": "careful"}


def run(stem: str) -> float:
    "Execute nbs/<stem>.ipynb in careful mode in the copy; write its outputs and mark back into nbs/."
    import papermill as pm

    source = NBS / f"{stem}.ipynb"
    original = nbformat.read(source, as_version=4)
    shutil.copy2(source, WORK / "nbs" / source.name)  # the current source, even on a store kept from an earlier run
    names = set(pm.inspect_notebook(str(source)))  # the names its `parameters` cell assigns
    params = {
        **({"mode": "careful"} if "mode" in names else {}),
        **{k: v for k, v in CAREFUL.get(stem, {}).items() if k in names},
    }
    executed = WORK / "nbs" / f"{stem}.executed.ipynb"
    started, env = time.perf_counter(), careful_env()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # papermill's kernel inherits this process's environment
    try:
        pm.execute_notebook(
            str(WORK / "nbs" / source.name),
            str(executed),
            parameters=params,
            cwd=str(WORK / "nbs"),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    seconds = time.perf_counter() - started
    result = nbformat.read(executed, as_version=4)
    result.cells = [c for c in result.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if [c.source for c in result.cells] != [c.source for c in original.cells]:
        raise SystemExit(f"{source.name}: the executed copy's cells differ from the source; nothing written")
    for mine, theirs in zip(original.cells, result.cells):
        if mine.cell_type == "code":
            mine.outputs, mine.execution_count = theirs.outputs, None
    original.metadata.setdefault("ml_project", {})["outputs"] = {
        "mode": "careful",
        "parameters": params,
        "code_md5": code_md5(original),
        "executed": dt.date.today().isoformat(),
        "seconds": round(seconds),
    }
    nbformat.write(original, source)
    executed.unlink()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", help="stems such as 34_search.tune (default: every notebook, from a fresh store)"
    )
    args = parser.parse_args()
    stems = args.notebooks or [p.stem for p in sorted(NBS.glob("*.ipynb")) if p.stem != "index"] + ["index"]
    fresh_project(keep_store=bool(args.notebooks) and WORK.exists())  # configs and notebooks as they are now
    for stem in stems:
        if not (NBS / f"{stem}.ipynb").is_file():
            raise SystemExit(f"no notebook nbs/{stem}.ipynb")
        print(f"{stem}: running in careful mode ...", flush=True)
        print(f"{stem}: {run(stem):.0f} s", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "nbdev-clean")], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
