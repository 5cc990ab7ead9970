"""The project's maps, generated so they cannot go stale: the README's folder map, the architecture page's stage table,
and each phase's face (`ml_project/<phase>/__init__.py`, its public names).

    python docs/maps.py --write          # make maps: rewrite all three (the README through nbs/index.ipynb)
    python docs/maps.py --write-faces    # the faces only (part of make export)
    python docs/maps.py --check          # exit 1 naming what is stale (tests/test_maps.py runs the same)

Everything is read from the notebooks (`#| default_exp`, the title and the `>` subtitle) and from the modules' source
(`__all__`, as nbdev writes it), never from an import: the maps of a fresh checkout are right before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS, PACKAGE = ROOT / "nbs", ROOT / "ml_project"

PHASES = {  # subpackage -> (chapters, what it is)
    "": (
        "00–08",
        "settings, configs, schema and data, EDA, preprocessing, features and the split: what every stage reads",
    ),
    "models": ("10–11", "the estimators and the factory that turns a config into one pipeline from raw rows"),
    "train": ("20–29", "training, model files, MLflow runs, the registry and the champion, evaluation, one experiment"),
    "search": (
        "30–34",
        "hyperparameter search with Optuna: one config's space, families, their blend, the study, tune",
    ),
    "serve": ("40–46", "the model in use: rows checked, the predictor, batch scoring, keys, the log, the service"),
    "monitor": ("50–53", "is the model still right: drift, quality, performance, the report, the check, retraining"),
    "deploy": (
        "60–62",
        "leaving the laptop: the container image of the service, the stack behind a load balancer, the release",
    ),
    "cluster": ("70–72", "beyond one machine: a Dask cluster, batch scoring and training on its workers"),
}
HAND_WRITTEN = {  # module -> (chapter, what it is; why it is not a notebook)
    "ml_project.errors": (0, "the project's error types, one line each at the command line (tests/test_errors.py)"),
    "ml_project.search.blend": (32, "ensemble selection of the families' leaders (tests/test_ensemble.py)"),
    "ml_project.search.services": (
        33,
        "starts and stops the team's PostgreSQL and MLflow server (tests/test_services.py)",
    ),
    "ml_project.serve.fast_path": (
        41,
        "a fitted pipeline compiled into NumPy steps for a few rows (tests/test_fast_path.py)",
    ),
    "ml_project.serve.protocol": (
        46,
        "uvicorn's httptools protocol with a deadline and size caps on a request's head (tests/test_hostile.py)",
    ),
    "ml_project.serve.mlflow_model": (41, "the MLflow `pyfunc` model (from code) answering through `ModelPredictor`"),
    "ml_project.deploy.image": (
        60,
        "the service's container image: build context, serving lock, Debian base, build (tests/test_image.py)",
    ),
    "ml_project.deploy.stack": (
        61,
        "the stack: API replicas behind HAProxy, Prometheus, from deploy/compose.yaml (tests/test_stack.py)",
    ),
    "ml_project.deploy.release": (
        62,
        "the release: a champion through its gates onto the stack, blue/green, and back (tests/test_release.py)",
    ),
    "ml_project.cluster.engine": (
        70,
        "a Dask cluster: started here by PID, or reached by address, its workers' versions checked (tests/test_cluster.py)",
    ),
    "ml_project.cli.common": (
        99,
        "the `ml-project` command's app, options, errors and logging (tests/test_hardening.py)",
    ),
    "ml_project.cli.lifecycle": (
        99,
        "`train`, `evaluate`, `predict`, `run`, `tune`, `data`, `infer-schema`, `init-config`",
    ),
    "ml_project.cli.operations": (99, "`serve`, `monitor`, `keys`, `services`"),
    "ml_project.cli.deploy": (99, "`image build`, `image base`, `stack up`, `stack down`, `stack status`"),
}
COMMANDS = {  # module -> how a user reaches it
    "settings": "every command reads `settings.ini` and `ML_PROJECT_*`",
    "sections": "every config's sections",
    "config": "every command's `--config`, `--set`",
    "schema": "`ml-project init-config`, `ml-project infer-schema`",
    "data": "`ml-project data`",
    "eda": "`papermill nbs/05_eda.ipynb out.ipynb -p config_file <config>`",
    "preprocessing": "part of every model pipeline",
    "features": "part of every model pipeline",
    "split": "`ml-project data`; part of `train`",
    "models.neural": "`model.type: mlp`",
    "models.factory": "part of `train`",
    "train.training": "part of `train`",
    "train.files": "`models/<experiment>/`; `ModelPredictor.from_path`",
    "train.tracking": "every MLflow run of `train`, `tune`, `monitor`",
    "train.registry": "`--model churn`, `churn@challenger`, `churn:3`",
    "train.champion": "part of `train` and `tune`; `ml-project models list`, `models show`",
    "train.evaluation": "part of `train`; `ml-project evaluate`",
    "train.report": "`ml-project evaluate`",
    "train.preflight": "every `train`, `run` and `tune`, before any work",
    "train.experiment": "`ml-project train` (`make run`)",
    "train.notebooks": "`ml-project run`",
    "search.space": "part of `tune`",
    "search.families": "`ml-project tune -c configs/churn_search.yaml`",
    "search.study": "`ml-project tune --workers`, `--storage`; `make services`",
    "search.tune": "`ml-project tune`",
    "serve.rows": "every prediction",
    "serve.predictor": "`from ml_project import ModelPredictor`",
    "serve.batch": "`ml-project predict`",
    "cluster.scoring": "`ml-project predict --cluster`",
    "cluster.training": "`ml-project train --cluster`",
    "serve.keys": "`ml-project keys add`, `keys list`, `keys revoke`",
    "serve.log": "the prediction log `serve` writes and `monitor` reads",
    "serve.service": "`ml-project serve`",
    "serve.app": "`ml-project serve` (`make serve`)",
    "monitor.drift": "part of `monitor`",
    "monitor.report": "part of `monitor`",
    "monitor.check": "`ml-project monitor` (`make monitor`)",
    "monitor.retrain": "`ml-project monitor --retrain`",
}
BEGIN, END = "<!-- begin: generated by docs/maps.py, edit the notebooks -->", "<!-- end: generated -->"


def notebooks() -> list[dict]:
    "Each numbered notebook: its stem, module, title and subtitle."
    out = []
    for path in sorted(NBS.glob("[0-9]*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = ["".join(c["source"]) for c in cells]
        module = next(re.search(r"#\| default_exp (\S+)", t).group(1) for t in text if "#| default_exp" in t)
        head = text[0]
        title = re.search(r"^# (.+)$", head, re.MULTILINE).group(1).strip()
        subtitle = re.search(r"^> (.+)$", head, re.MULTILINE).group(1).strip()
        out.append(dict(stem=path.stem, module=module, title=title, subtitle=subtitle))
    return out


def _module_path(module: str) -> str:
    return "ml_project/" + module.replace(".", "/") + ".py"


HEAD = """settings.ini            <- runtime settings: paths, MLflow URI, seed, mode (careful | fast)
pyproject.toml          <- package metadata, dependencies, nbdev and ruff config ([tool.nbdev], [tool.ruff])
requirements.lock       <- the pinned environment `make` installs (regenerate: make lock)
Makefile                <- run, test, lint, format, export, maps, lab, mlflow-ui, lock (`make help` lists them)"""
TAIL = """configs/                <- experiment configs (YAML) and column schemas (configs/schemas/)
runs/                   <- executed notebooks of `ml-project run` (one folder per MLflow run), optuna.db, study plots
data/
  raw/                  <- the original, immutable data; *.dvc files record each file's hash
  processed/            <- train/valid/test parquet + manifest.json, per experiment
  external/             <- data from third parties you bring
models/                 <- trained pipelines (model.joblib) with metadata.json (schema, labels, threshold, metrics, sha256)
  registry/               verified local copies of registered versions (<name>/v<version>/)
tests/                  <- pytest: config errors, data integrity, leakage, estimators, layering, end to end
docs/                   <- hand-written pages (requirements, architecture, operations), the site's build, these maps
deploy/                 <- Containerfile, the serving locks' inputs, podman settings; Prometheus alert rules and tests
benchmarks/             <- scripts that print speed and quality figures beside their references
.ci/run                 <- what CI runs on a fresh clone: make test"""


def folder_map() -> str:
    "The README's folder map: the notebooks and the package from their sources, the rest as it is laid out."
    lines = [
        HEAD,
        "nbs/                    <- the source of truth: one notebook per stage, numbered by phase (NN_phase.module)",
    ]
    for nb in notebooks():
        lines.append(f"  {nb['stem'] + '.ipynb':28s} {nb['title']:30s} -> {_module_path(nb['module'])}")
    paths = [m.split(".", 1)[1].replace(".", "/") for m in HAND_WRITTEN]
    hand = ", ".join(dict.fromkeys("cli/" if p.startswith("cli/") else p + ".py" for p in paths))
    lines.append(f"ml_project/             <- the package, exported from nbs/ by `make export` (hand-written: {hand})")
    for phase, (chapters, what) in PHASES.items():
        if phase:
            lines.append(f"  {phase + '/':28s} chapters {chapters}: {what}")
    return "\n".join([*lines, TAIL])


def stage_table() -> str:
    "The architecture page's table: notebook, module, what it is, how a user reaches it."
    rows = [
        "| chapter | notebook (source) | module (exported) | what it is | reached by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for nb in notebooks():
        command = COMMANDS.get(nb["module"], "")
        rows.append(
            f"| {nb['stem'].split('_')[0]} | `nbs/{nb['stem']}.ipynb` | `ml_project.{nb['module']}` | "
            f"{nb['subtitle']} | {command} |"
        )
    rows += [
        "",
        "Hand-written modules (dense machinery, tested in `tests/`), each placed at a chapter:",
        "",
        "| chapter | module | what it is |",
        "| --- | --- | --- |",
    ]
    rows += [f"| {chapter} | `{module}` | {what} |" for module, (chapter, what) in HAND_WRITTEN.items()]
    return "\n".join(rows)


def _all_names(path: Path) -> list[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return [n for n in ast.literal_eval(node.value) if n not in ("log", "access_log")]
    return []


def face(phase: str) -> str:
    "A phase's `__init__.py`: its modules' public names, each imported from its module on first use."
    chapters, what = PHASES[phase]
    modules = {p.stem: _all_names(p) for p in sorted((PACKAGE / phase).glob("*.py")) if p.stem != "__init__"}
    where = {}
    for module, names in modules.items():
        for name in names:
            where.setdefault(name, module)
    listing = "\n".join(
        f"    {m!r}: {sorted(n for n in names if where[n] == m)!r}," for m, names in modules.items() if names
    )
    public = "".join(f"    {n!r},\n" for n in sorted(where))
    return f'''"""Chapters {chapters}: {what}.

Generated by `docs/maps.py` (`make export`): each public name is imported from its module on first use, so importing one
module of the phase imports none of the others. `from ml_project.{phase} import X` and
`from ml_project.{phase}.<module> import X` give the same object.
"""

import importlib

_MODULES = {{
{listing}
}}
_WHERE = {{name: module for module, names in _MODULES.items() for name in names}}
__all__ = [
{public}]


def __getattr__(name):
    "A public name of the phase, imported from its module on first use."
    if name in _WHERE:
        return getattr(importlib.import_module(f"{{__name__}}.{{_WHERE[name]}}"), name)
    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")


def __dir__():
    return sorted([*globals(), *__all__])
'''.replace("'", '"')


def _between(text: str, block: str, where: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{where}: no generated block ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1]


def _format(text: str) -> str:
    "A face as `ruff format` leaves it, so `make export` and this agree."
    import subprocess

    done = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "format", "--quiet", "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return done.stdout if done.returncode == 0 else text


def expected() -> dict[Path, str]:
    "Every generated file's text as it should be."
    out = {}
    index = NBS / "index.ipynb"
    nb = json.loads(index.read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if BEGIN in source:
            new = _between(source, "```\n" + folder_map() + "\n```", "nbs/index.ipynb")
            lines = new.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    out[index] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    architecture = ROOT / "docs" / "architecture.md"
    out[architecture] = _between(architecture.read_text(), stage_table(), "docs/architecture.md")
    for phase in PHASES:
        if phase:
            out[PACKAGE / phase / "__init__.py"] = _format(face(phase))
    return out


def stale() -> list[str]:
    return [f"{p.parent.name}/{p.name}" for p, text in expected().items() if not p.is_file() or p.read_text() != text]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true")
    group.add_argument("--write-faces", action="store_true")
    group.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.check:
        found = stale()
        if found:
            raise SystemExit(f"stale maps (run `make maps`): {', '.join(found)}")
        print("maps are up to date")
        return
    for path, text in expected().items():
        if args.write or path.name == "__init__.py":
            path.write_text(text)
    print("wrote the maps" if args.write else "wrote the phases' faces")


if __name__ == "__main__":
    main()
