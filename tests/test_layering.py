"""The package is layered: a chapter imports only chapters before it, so nothing can import in a circle.

The rule of `nbs/`: a notebook builds on earlier notebooks only, and the module it exports imports only their modules, at
its top or inside a function alike. The one exception is listed in `package_shape.ALLOWED_UPWARD`, with its reason.
"""

import shutil

import package_shape as shape
import pytest


@pytest.fixture(scope="module")
def modules():
    return shape.read_package()


def test_every_module_has_a_chapter(modules):
    faces = {name for name, m in modules.items() if m.path.name == "__init__.py"}
    unplaced = [name for name, m in modules.items() if m.chapter is None and name not in faces]
    assert not unplaced, (
        f"modules with no chapter (export them from a numbered notebook, or list them in HAND_WRITTEN): {unplaced}"
    )


def test_every_project_import_names_a_module_that_exists(modules):
    "A lazy import of a module that moved fails only when it runs: found here, before anyone runs it."
    found = {name: m.unresolved for name, m in modules.items() if m.unresolved}
    assert not found, f"imports of project modules that do not exist: {found}"


def test_no_module_imports_a_later_chapter(modules):
    upward = [
        f"{i.importer} (chapter {modules[i.importer].chapter:g}) imports {i.imported} (chapter "
        f"{modules[i.imported].chapter:g}) at line {i.line}{' inside a function' if i.nested else ''}"
        for i in shape.upward_imports(modules)
    ]
    assert not upward, "imports that run up the chapters:\n" + "\n".join(upward)


def test_no_circles(modules):
    assert shape.circles(modules) == []


def test_the_rule_sees_a_hidden_upward_import(tmp_path):
    "An import inside a function, the kind that hid today's circle, is still an upward import."
    shutil.copytree(shape.PACKAGE, tmp_path / "ml_project", ignore=shutil.ignore_patterns("__pycache__"))
    models = tmp_path / "ml_project" / "models" / "factory.py"
    models.write_text(
        models.read_text() + "\n\ndef _late():\n    from ml_project.search.families import family_configs\n"
    )
    found = shape.upward_imports(shape.read_package(tmp_path))
    assert [(i.importer, i.imported, i.nested) for i in found] == [
        ("ml_project.models.factory", "ml_project.search.families", True)
    ]
    (circle,) = shape.circles(shape.read_package(tmp_path))  # families -> space -> training -> factory -> families
    assert {"ml_project.models.factory", "ml_project.search.families"} <= set(circle)


def test_each_phase_face_lists_its_modules_public_names(modules):
    import importlib

    from maps import PHASES

    for name, module in modules.items():
        if module.path.name != "__init__.py" or name.removeprefix("ml_project.") not in PHASES:
            continue
        face = importlib.import_module(name)
        public = {
            n
            for sub, m in modules.items()
            if sub.startswith(name + ".")
            for n in getattr(importlib.import_module(sub), "__all__", [])
            if n not in ("log", "access_log")
        }
        assert set(face.__all__) == public, f"{name}/__init__.py is stale: run `make export`"
        for n in face.__all__:
            assert getattr(face, n) is not None
