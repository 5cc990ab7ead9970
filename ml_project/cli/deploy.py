"""`ml-project` commands of deployment: image (build, base).

Hand-written: each command parses its options, calls one function of `ml_project.deploy` and prints what it returns.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ml_project.cli import operations  # noqa: F401  (registered before these: `--help` lists commands in order)
from ml_project.cli.common import _fail, _project_errors, _setup, app

image_app = typer.Typer(help="The prediction service's container image (deploy/Containerfile).", no_args_is_help=True)
app.add_typer(image_app, name="image")
Engine = Annotated[str | None, typer.Option(help="podman or docker (default: podman if installed, else docker)")]


@image_app.command("build")
def image_build(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The model to bake in: name (its champion), name:version, or a folder; none: fetched at start",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="The base image, e.g. python:3.11-slim (default: a Debian one made here with mmdebstrap)"),
    ] = None,
    engine: Engine = None,
):
    "Build the service's image with a model's verified files in it; print its tag and size."
    from ml_project.deploy import image

    settings = _setup(None)
    try:
        context = image.prepare_context(model, settings)
        tag = image.build_image(context, base, engine)
        size = image.image_size(tag, image.container_engine(engine))
    except _project_errors() as e:
        _fail(str(e), 1)
    what = f"{context.model['name']} v{context.model['version']}" if context.model else "no model (fetched at start)"
    typer.echo(f"built {tag}: {what}, {size / 1e6:.0f} MB, {context.lock.name}; context in {context.folder}")


@image_app.command("base")
def image_base(
    engine: Engine = None,
    rebuild: Annotated[bool, typer.Option(help="Make it again (e.g. for Debian's security updates)")] = False,
):
    "Make the Debian base image (bookworm minbase + python3) with mmdebstrap, unless the image store has it."
    from ml_project.deploy import image

    _setup(None)
    try:
        typer.echo(image.build_base_image(engine, rebuild=rebuild))
    except _project_errors() as e:
        _fail(str(e), 1)
