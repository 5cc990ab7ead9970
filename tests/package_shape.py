"""The package's shape, read from its source: modules, their chapters, the imports between them, their sizes.

Used by `tests/test_layering.py` (the rules) and `benchmarks/notebook_metrics.py` (the figures). A module's chapter is the
number of the notebook it is exported from (`nbs/34_search.tune.ipynb` -> 34); hand-written modules are given theirs in
`docs/maps.py`, which the architecture page's table is generated from.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ml_project"
sys.path.insert(0, str(ROOT / "docs"))
from maps import HAND_WRITTEN

ALLOWED_UPWARD = {  # (importer, imported): why it may import a higher chapter
    (
        "ml_project",
        "ml_project.serve.predictor",
    ): "the package face: `from ml_project import ModelPredictor`, imported on first use",
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 50


@dataclass
class Import:
    importer: str  # the module that imports
    imported: str  # the module imported
    line: int  # where
    nested: bool  # inside a function (a lazy import), not at the module's top level


@dataclass
class Module:
    name: str  # dotted, e.g. ml_project.search.tune
    path: Path
    chapter: float | None  # None for the package faces (`__init__.py`)
    notebook: str | None  # the notebook it is exported from
    lines: int
    functions: dict[str, int] = field(default_factory=dict)  # qualified name -> lines
    imports: list[Import] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # project modules it imports that do not exist


def _dotted(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool, known: set[str]) -> list[str]:
    "The project modules an import names: `from ml_project.search import services` is the module `services`."
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("ml_project"):
        return []
    found = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    return found if len(found) == len(node.names) else [target, *found]


def _functions(tree: ast.AST) -> dict[str, int]:
    out = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[prefix + child.name] = child.end_lineno - child.lineno + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return out


def read_package(root: Path = ROOT) -> dict[str, Module]:
    "Every module of `ml_project` under `root` (nbdev's index aside), with its chapter, size, functions and project imports."
    paths = sorted(
        p for p in (root / "ml_project").rglob("*.py") if p.name != "_modidx.py" and "__pycache__" not in p.parts
    )
    known = {_dotted(p, root) for p in paths}
    modules = {}
    for path in paths:
        name, text = _dotted(path, root), path.read_text()
        found = re.search(r"File to edit: (?:\.\./)+nbs/(\d+)", text)
        notebook = re.search(r"File to edit: (?:\.\./)+(nbs/[^ ]+\.ipynb)", text)
        chapter = float(found.group(1)) if found else HAND_WRITTEN.get(name, (None,))[0]
        if path.name == "__init__.py":
            chapter = -1 if name == "ml_project" else None
        tree = ast.parse(text)
        module = Module(
            name, path, chapter, notebook.group(1) if notebook else None, len(text.splitlines()), _functions(tree)
        )
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, node, path.name == "__init__.py", known)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ml_project")]
            else:
                continue
            for target in targets:
                if target in known and target != name:
                    module.imports.append(Import(name, target, node.lineno, id(node) not in top))
            if isinstance(node, ast.ImportFrom) and targets and not any(t in known for t in targets):
                module.unresolved.append(f"{targets[0]} (line {node.lineno})")
        modules[name] = module
    return modules


def is_face_import(imp: Import, modules: dict[str, Module]) -> bool:
    "A phase's face (`ml_project/train/__init__.py`) loading one of its own modules."
    importer = modules[imp.importer]
    return (
        importer.path.name == "__init__.py" and importer.chapter is None and imp.imported.startswith(imp.importer + ".")
    )


def upward_imports(modules: dict[str, Module]) -> list[Import]:
    "Imports of a higher chapter than the importer's, at top level or inside a function (the faces' own loads aside)."
    out = []
    for module in modules.values():
        for imp in module.imports:
            mine, theirs = module.chapter, modules[imp.imported].chapter
            if is_face_import(imp, modules) or mine is None or theirs is None:
                continue
            if theirs > mine and (imp.importer, imp.imported) not in ALLOWED_UPWARD:
                out.append(imp)
    return out


def circles(modules: dict[str, Module]) -> list[list[str]]:
    "Groups of modules that import each other, directly or through others (Tarjan's strongly connected components)."
    graph = {m: {i.imported for i in mod.imports if not is_face_import(i, modules)} for m, mod in modules.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in graph:
        if v not in index:
            connect(v)
    return out
