"""Prepare the docs site's sources: notebooks processed the nbdev way, plus the hand-written pages.

    python docs/prepare.py [--out _proc]     # then: sphinx-build -c docs _proc _docs
    python docs/prepare.py --readme          # rewrite README.md from nbs/index.ipynb

For each notebook in nbs/ (in lifecycle order): `#| hide` cells are removed, directives are stripped,
stderr output (progress bars, log lines) is dropped, and after every `#| export` cell an API reference
entry (signature and docstring) is added for each public function and class it defines. The home page is
nbs/index.ipynb with the site's table of contents; README.md is generated from the same notebook.
"""

import argparse
import ast
import importlib
import inspect
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbdev.process import NBProcessor
from nbdev.processors import hide_

sys.path.insert(0, str(Path(__file__).resolve().parent))
from outputs import code_md5

ROOT = Path(__file__).resolve().parent.parent
NBS, DOCS = ROOT / "nbs", ROOT / "docs"
HAND_WRITTEN = ["requirements.md", "architecture.md", "operations.md"]  # in sidebar order, after the notebooks


REPOSITORY = "https://github.com/ml-project/ml-project"  # pyproject's [project.urls] Repository


def _cell(text: str) -> str:
    return f"`{text}`".replace("|", "\\|")  # a table cell: pipes escaped


def _type(annotation) -> str:
    "An annotation as written (`str | None`), or nothing for inspect's empty marker."
    if annotation is inspect.Parameter.empty:
        return ""
    return _cell(
        annotation
        if isinstance(annotation, str)
        else getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    )


def _default(value) -> str:
    "A default as Python writes it (`''`, `0.05`, `None`), or nothing for a required parameter."
    return "" if value is inspect.Parameter.empty else _cell(repr(value))


def parameters(obj) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) per parameter: a pydantic model's fields and their descriptions, else nbdev's
    docments (the comment after each argument, or a dataclass field)."""
    from fastcore.docments import docments

    fields = getattr(obj, "model_fields", None) if inspect.isclass(obj) else None
    if fields is not None:
        from pydantic_core import PydanticUndefined

        return [
            (
                name,
                _type(f.annotation),
                "required"
                if f.default is PydanticUndefined and f.default_factory is None
                else ("(computed)" if f.default_factory is not None else _default(f.default)),
                f.description or "",
            )
            for name, f in fields.items()
        ]
    try:
        documented = docments(obj, full=True)
    except Exception:  # noqa: BLE001 (a symbol fastcore cannot read gets no table, not a failed build)
        return []
    return [
        (name, _type(d["anno"]), _default(d["default"]), d["docment"] or "")
        for name, d in documented.items()
        if name not in ("self", "cls", "return") and not name.startswith("_")
    ]


def source_link(obj) -> str:
    "A link to the line that defines `obj` in the repository, or '' when it has no source file of ours."
    try:
        file, line = inspect.getsourcefile(obj), inspect.getsourcelines(obj)[1]
    except (TypeError, OSError):
        return ""
    try:
        relative = Path(file).resolve().relative_to(ROOT)
    except ValueError:
        return ""
    return f"[source]({REPOSITORY}/blob/main/{relative}#L{line})"


def own_doc(obj) -> str:
    "The docstring `obj` has itself: a class's own, not the one it inherits (pydantic's is long)."
    return inspect.cleandoc((vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__) or "")


def api_entry(obj, name: str, module: str = "") -> str:
    """Markdown for one public symbol: an index entry, a heading (anchor and search term), the signature, the
    docstring, a table of its parameters (type, default, the comment after each) and a link to its source line."""
    kind = "class" if inspect.isclass(obj) else "function"
    try:
        signature = f"{name}{inspect.signature(obj, eval_str=True)}"
    except Exception:  # noqa: BLE001 (a builtin, or an annotation that does not evaluate here)
        try:
            signature = f"{name}{inspect.signature(obj)}"
        except (TypeError, ValueError):
            signature = name
    doc = own_doc(obj)
    rows = [r for r in parameters(obj) if any(r[1:])]  # a bare *args or **kwargs says nothing a table would add
    table = (
        (
            "\n\n| parameter | type | default | meaning |\n| --- | --- | --- | --- |\n"
            + "\n".join(f"| `{n}` | {t} | {d} | {m.replace('|', '/')} |" for n, t, d, m in rows)
        )
        if rows
        else ""
    )
    link = source_link(obj)
    entry = f"```{{index}} single: {name}; {module}\n```\n" if module else ""
    return (
        f"{entry}(api-{name})=\n#### `{name}`\n\n```python\n{kind} {signature}\n```\n\n{doc}{table}"
        + (f"\n\n{link}" if link else "")
        + "\n"
    )


def defined_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]


def patched(module, public: set[str], name: str) -> tuple | None:
    "A method that fastcore's `@patch` added to one of the module's public classes, and its dotted name, else None."
    for cls in (getattr(module, n) for n in public):
        method = getattr(cls, name, None) if inspect.isclass(cls) else None
        if method is not None and getattr(method, "__qualname__", "") == f"{cls.__name__}.{name}":
            return method, f"{cls.__name__}.{name}"
    return None


def public_symbols() -> set[str]:
    "Every name the notebook-exported modules (those in nbdev's index) list in `__all__`."
    from ml_project._modidx import d

    return {name for module in d["syms"] for name in getattr(importlib.import_module(module), "__all__", [])}


_CODE_SPAN = re.compile(r"(?<![\[`])`([A-Za-z_][A-Za-z0-9_]*)`(?![`\]])")


def link_symbols(markdown: str, symbols: set[str]) -> str:
    "Turn `name` into a link to its API entry when `name` is a public symbol (outside code blocks)."
    parts = re.split(r"(```.*?```)", markdown, flags=re.DOTALL)
    return "".join(
        p
        if p.startswith("```")
        else _CODE_SPAN.sub(
            lambda m: f"[`{m.group(1)}`](project:#api-{m.group(1)})" if m.group(1) in symbols else m.group(0), p
        )
        for p in parts
    )


FAST_MARKS = re.compile(r"\w__fast\b|mode='fast'|'mode': 'fast'")  # names and reprs only fast-mode runs print


def careful_outputs(path: Path, nb) -> dict:
    """The notebook's careful-run mark from `docs/outputs.py`; an error naming the fix when there is none, when the code
    changed after the run, or when an output shows a fast-mode name."""
    mark = nb.metadata.get("ml_project", {}).get("outputs")
    fix = f"run `make docs-outputs NB={path.stem}`"
    if not mark or mark.get("mode") != "careful":
        raise SystemExit(f"nbs/{path.name}: its outputs are not marked as a careful-mode run; {fix}")
    if mark.get("code_md5") != code_md5(nb):
        raise SystemExit(f"nbs/{path.name}: its code changed after its careful run of {mark.get('executed')}; {fix}")
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or "".join(str(v) for v in output.get("data", {}).values() if isinstance(v, str))
            if isinstance(text, list):
                text = "".join(text)
            if FAST_MARKS.search(text):
                raise SystemExit(
                    f"nbs/{path.name}: an output shows a fast-mode run ({FAST_MARKS.search(text).group(0)!r}); {fix}"
                )
    return mark


def run_note(mark: dict) -> str:
    "What the page's outputs come from, shown under its title."
    chosen = ", ".join(f"`{k}={v!r}`" for k, v in mark["parameters"].items())
    return (
        f"*The outputs on this page come from a careful-mode run ({chosen or 'the notebook as it stands'}, "
        f"seed and configs as shipped) of {mark['executed']}, {mark['seconds']:,} s; `make docs-outputs` makes them again.*"
    )


def process(path: Path, symbols: set[str] = frozenset(), documented: list | None = None) -> nbformat.NotebookNode:
    """nbdev's own processing (directives parsed and stripped, `#| hide` cells dropped), then our additions; the
    (module, name) of each API entry written is appended to `documented`."""
    documented = [] if documented is None else documented
    mark = careful_outputs(path, nbformat.read(path, as_version=4))
    processor = NBProcessor(path, procs=[hide_], rm_directives=True)
    processor.process()
    module, cells = None, []
    for cell in processor.nb.cells:
        flags = cell.get("directives_") or {}
        if "default_exp" in flags:
            module = importlib.import_module(f"ml_project.{flags['default_exp']}")
            continue
        cell = nbformat.from_dict({k: v for k, v in cell.items() if not k.endswith("_")})  # drop nbdev's bookkeeping
        if cell.cell_type == "markdown":
            cell.source = link_symbols(cell.source, symbols)
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.get("outputs", [])
                if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
            cell.metadata = {}
        cells.append(cell)
        if len(cells) == 1 and cell.cell_type == "markdown" and cell.source.startswith("# ") and path.stem != "index":
            cells.append(nbformat.v4.new_markdown_cell(run_note(mark)))
        if "export" in flags and module is not None:
            public = set(getattr(module, "__all__", []))
            entries = [
                api_entry(getattr(module, n), n, module.__name__)
                if n in public
                else api_entry(*patched(module, public, n), module.__name__)
                for n in defined_names(cell.source)
                if n in public or patched(module, public, n)
            ]
            documented.extend((module.__name__, n) for n in defined_names(cell.source) if n in public)
            if entries:
                cells.append(nbformat.v4.new_markdown_cell("\n".join(entries)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = nbformat.from_dict(dict(processor.nb.get("metadata", {})))
    return nb


def toc(pages: list[str]) -> nbformat.NotebookNode:
    listing = "\n".join(pages)
    return nbformat.v4.new_markdown_cell(f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{listing}\n```")


def api_index(documented: list[tuple[str, str]]) -> str:
    "The API index page: every public name of every notebook-exported module, by module, linked to its entry."
    from ml_project._modidx import d

    lines = [
        "# API index",
        "",
        "Every public name of the package, module by module in lifecycle order. Each links to its entry, which sits",
        "beside the notebook code that defines it: signature, docstring, parameters and a link to the source.",
        "",
    ]
    linked, lifecycle = set(documented), [p.stem for p in sorted(NBS.glob("*.ipynb"))]
    for name in sorted(
        d["syms"], key=lambda m: lifecycle.index(_notebook(m)) if _notebook(m) in lifecycle else len(lifecycle)
    ):
        module = importlib.import_module(name)
        summary = (module.__doc__ or "").strip().split("\n")[0]
        lines += [f"## `{name}`", "", summary, ""]
        public = list(getattr(module, "__all__", []))
        for symbol in public:
            if (name, symbol) in linked:
                doc = own_doc(getattr(module, symbol))
                lines.append(f"- [`{symbol}`](project:#api-{symbol}): {doc.split(chr(10))[0]}")
        others = [s for s in public if (name, s) not in linked]
        if others:
            lines += ["", "Constants and aliases: " + ", ".join(f"`{s}`" for s in others) + "."]
        lines.append("")
    return "\n".join(lines)


def _notebook(module: str) -> str | None:
    "The notebook that exports `module`, from the module's own header."
    text = Path(importlib.import_module(module).__file__).read_text()
    found = re.search(r"File to edit: \.\./nbs/([^.]+)\.ipynb", text)
    return found.group(1) if found else None


def prepare(out: Path):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    notebooks = sorted(p for p in NBS.glob("*.ipynb") if p.name != "index.ipynb")
    symbols, documented = public_symbols(), []
    for path in notebooks:
        nbformat.write(process(path, symbols, documented), out / path.name)
    (out / "api.md").write_text(api_index(documented))
    for page in HAND_WRITTEN:
        (out / page).write_text(link_symbols((DOCS / page).read_text(), symbols))
    index = process(NBS / "index.ipynb", symbols)
    index.cells.append(toc([p.stem for p in notebooks] + ["api"] + [Path(p).stem for p in HAND_WRITTEN]))
    nbformat.write(index, out / "index.ipynb")
    return [out / p.name for p in notebooks]


def readme_text() -> str:
    "README.md: the home page notebook's markdown, with a note saying where it comes from."
    nb = nbformat.read(NBS / "index.ipynb", as_version=4)
    parts = []
    for (
        cell
    ) in nb.cells:  # code as a fenced block, with what it printed: the text that introduces it is not left hanging
        if cell.cell_type == "markdown":
            parts.append(cell.source)
        elif cell.source.strip() and not cell.source.lstrip().startswith("#|"):
            printed = "".join(
                o.get("text", "")
                for o in cell.get("outputs", [])
                if o.get("output_type") == "stream" and o.get("name") == "stdout"
            )
            parts.append(
                f"```python\n{cell.source.strip()}\n```"
                + (f"\n\n```text\n{printed.strip()}\n```" if printed.strip() else "")
            )
    note = "<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->"
    return note + "\n\n" + "\n\n".join(parts).strip() + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_proc")
    parser.add_argument("--readme", action="store_true", help="write README.md from nbs/index.ipynb instead")
    args = parser.parse_args()
    if args.readme:
        (ROOT / "README.md").write_text(readme_text())
        print("wrote README.md from nbs/index.ipynb")
    else:
        written = prepare(args.out)
        print(f"prepared {len(written)} notebooks, {len(HAND_WRITTEN)} pages and the home page in {args.out}")
