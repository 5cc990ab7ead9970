"""How literate the notebooks are, measured the way issue 14 measured them (nbdev's own notebooks for scale), and the
package's shape, against the limits issue 23 set.

    .venv/bin/python benchmarks/notebook_metrics.py [--per-notebook]
    .venv/bin/python benchmarks/notebook_metrics.py --shape [--root DIR]   # the shape only, of this checkout or another

- words of prose per line of code: words in markdown cells / non-blank code lines (directive lines not counted);
- export cells defining more than one name: top-level functions, classes and public assignments per `#| export` cell;
- the largest code cell, and how many are over 40 lines;
- test calls (`test_eq`, `test_close`, `test_fail`, ...) shown as examples, and hidden in `#| hide` cells;
- public definitions (functions and classes in the modules' `__all__`) with a docstring of their own;
- parameters in the docs site's API tables with a meaning (a docments comment, or a pydantic field's description),
  read the way `docs/prepare.py` builds those tables.

The figures are a guide, not a target: prose that explains nothing does not count.
"""

import argparse
import ast
import importlib
import inspect
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_CALL = re.compile(r"\btest_(eq|ne|close|fail|is|warns|shuffled|stdout|eq_type|sig)\s*\(")


def directives(source: str) -> tuple[set[str], list[str]]:
    "The cell's `#|` directives and its other lines."
    lines = source.splitlines()
    n = 0
    while n < len(lines) and lines[n].startswith("#|"):
        n += 1
    return {line[2:].strip().split()[0] for line in lines[:n] if line[2:].strip()}, lines[n:]


def defined(source: str) -> list[str]:
    "Top-level functions, classes and public assigned names of a cell."
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_")]
    return names


def measure(path: Path) -> dict:
    nb = json.loads(path.read_text())
    words = code_lines = 0
    export_cells = multi = names = largest = over_40 = shown = hidden = 0
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        flags, body = directives(source)
        if cell["cell_type"] == "markdown":
            words += len(re.findall(r"[A-Za-z][A-Za-z'’-]*", "\n".join(body)))
            continue
        lines = [line for line in body if line.strip()]
        code_lines += len(lines)
        largest, over_40 = max(largest, len(lines)), over_40 + (len(lines) > 40)
        tests = len(TEST_CALL.findall("\n".join(body)))
        if "hide" in flags:
            hidden += tests
        else:
            shown += tests
        if "export" in flags or "exports" in flags:
            defs = defined("\n".join(body))
            if defs:
                export_cells, names, multi = export_cells + 1, names + len(defs), multi + (len(defs) > 1)
    return dict(
        words=words,
        code_lines=code_lines,
        export_cells=export_cells,
        multi=multi,
        names=names,
        largest=largest,
        over_40=over_40,
        shown=shown,
        hidden=hidden,
    )


def docstrings() -> tuple[int, int, list[str]]:
    "Public functions and classes of the notebook-exported modules, how many have their own docstring, and which lack one."
    from ml_project._modidx import d

    total, documented, lacking = 0, 0, []
    for name in d["syms"]:
        module = importlib.import_module(name)
        for symbol in getattr(module, "__all__", []):
            obj = getattr(module, symbol)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, "__module__", "") != name:
                continue
            total += 1
            own = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if own and own.strip():
                documented += 1
            else:
                lacking.append(f"{name}.{symbol}")
    return total, documented, lacking


def parameter_meanings() -> tuple[int, int, list[str]]:
    "Rows of the API entries' parameter tables, how many say what the parameter means, and the symbols with a blank one."
    import sys

    sys.path.insert(0, str(ROOT / "docs"))
    import prepare

    from ml_project._modidx import d

    total, meant, lacking = 0, 0, []
    for name in d["syms"]:
        module = importlib.import_module(name)
        for symbol in getattr(module, "__all__", []):
            obj = getattr(module, symbol)
            if not callable(obj) or getattr(obj, "__module__", "") != name:
                continue
            rows = [r for r in prepare.parameters(obj) if any(r[1:])]  # as the site's table: bare *args say nothing
            total, meant = total + len(rows), meant + sum(bool(r[3]) for r in rows)
            lacking += [f"{symbol}({r[0]})" for r in rows if not r[3]]
    return total, meant, lacking


def shape(root: Path) -> None:
    """The package's shape (`tests/package_shape.py` reads it): modules and their lines, the longest functions, circles,
    imports of a later chapter and imports inside functions; and ruff's findings with this project's rules."""
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    import package_shape

    modules = package_shape.read_package(root)
    lines = {name: m.lines for name, m in modules.items()}
    functions = sorted(
        ((n, f"{name}.{f}") for name, m in modules.items() for f, n in m.functions.items()), reverse=True
    )
    imports = [i for m in modules.values() for i in m.imports]
    upward = package_shape.upward_imports(modules)
    ruff = subprocess.run(
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--statistics",
            "--exit-zero",
            "--quiet",
            "--config",
            str(ROOT / "pyproject.toml"),
            "ml_project",
            "nbs",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout
    findings = sum(int(line.split()[0]) for line in ruff.splitlines() if line.split() and line.split()[0].isdigit())
    limit_m, limit_f = package_shape.MAX_MODULE_LINES, package_shape.MAX_FUNCTION_LINES
    big = max(lines, key=lines.get)
    print(f"| measured ({root}) | limit | value |")
    print("|---|---|---|")
    print(f"| modules (lines in all) | | {len(modules)} ({sum(lines.values()):,}) |")
    print(
        f"| largest module | {limit_m} lines | {big} {lines[big]} (over {limit_m}: {sum(v > limit_m for v in lines.values())}) |"
    )
    print(
        f"| longest function | {limit_f} lines | {functions[0][1]} {functions[0][0]} "
        f"(over {limit_f}: {sum(n > limit_f for n, _ in functions)}) |"
    )
    print(f"| import circles | 0 | {len(package_shape.circles(modules))} |")
    allowed = [i for i in imports if (i.importer, i.imported) in package_shape.ALLOWED_UPWARD]
    print(
        f"| imports of a later chapter | the package face only | {len(upward)}"
        + "".join(f"; {i.importer} -> {i.imported}" for i in upward[:6])
        + (f" (and {len(allowed)} allowed: the package face)" if allowed else "")
        + " |"
    )
    print(f"| project imports inside functions | | {sum(i.nested for i in imports)} of {len(imports)} |")
    print(f"| ruff findings (ml_project, nbs; pyproject's rules) | 0 | {findings} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-notebook", action="store_true")
    parser.add_argument("--shape", action="store_true", help="only the package's shape")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (with --shape)")
    args = parser.parse_args()
    if args.shape:
        return shape(args.root)
    notebooks = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    results = {p.stem: measure(p) for p in notebooks}
    total = {k: (max if k == "largest" else sum)(r[k] for r in results.values()) for k in next(iter(results.values()))}
    if args.per_notebook:
        print(
            f"{'notebook':22s} {'prose/code':>10s} {'multi-name export cells':>24s} {'largest':>8s} {'>40':>4s} {'shown':>6s} {'hidden':>7s}"
        )
        for name, r in results.items():
            print(
                f"{name:22s} {r['words'] / max(r['code_lines'], 1):10.2f} {r['multi']:>8d} of {r['export_cells']:<3d} ({r['names']:3d} names)"
                f" {r['largest']:8d} {r['over_40']:4d} {r['shown']:6d} {r['hidden']:7d}"
            )
        print()
    ratio = {n: r["words"] / max(r["code_lines"], 1) for n, r in results.items()}
    low = sorted(ratio, key=ratio.get)[:3]
    documented_total, documented, lacking = docstrings()
    print("| measured | nbdev's own notebooks (issue 14) | ours |")
    print("|---|---|---|")
    print(
        f"| words of prose per line of code | 1.28 | {total['words'] / total['code_lines']:.2f} "
        f"(lowest: {', '.join(f'{n} {ratio[n]:.2f}' for n in low)}; highest: {max(ratio, key=ratio.get)} {max(ratio.values()):.2f}) |"
    )
    print(
        f"| export cells defining more than one name | 18 % | {total['multi'] / total['export_cells']:.0%} "
        f"({total['names']} names in {total['export_cells']} cells) |"
    )
    print(f"| largest code cell | 70 lines | {total['largest']} lines; {total['over_40']} cells over 40 lines |")
    print(f"| test calls shown as examples | 116 shown, 71 hidden | {total['shown']} shown, {total['hidden']} hidden |")
    print(
        f"| public definitions with a docstring | nearly all | {documented} of {documented_total}"
        + (f" (lacking: {', '.join(lacking)})" if lacking else "")
        + " |"
    )
    rows, meant, blank = parameter_meanings()
    print(
        f"| API table parameters with a meaning (docments) | most | {meant} of {rows}"
        + (f" (blank: {', '.join(blank[:8])}{' ...' if len(blank) > 8 else ''})" if blank else "")
        + " |"
    )


if __name__ == "__main__":
    main()
