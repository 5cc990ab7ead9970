"""`ml-project` commands of deployment: image (build, base), stack (up, down, status), release.

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
Repository = Annotated[
    str,
    typer.Option(
        help="The image's repository, e.g. registry.example.com/team/ml-project (tag: <it>/<model>:<version>)"
    ),
]


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
    repository: Repository = "ml-project",
):
    "Build the service's image with a model's verified files in it; print its tag and size."
    from ml_project.deploy import image

    settings = _setup(None)
    try:
        context = image.prepare_context(model, settings, repository=repository)
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


stack_app = typer.Typer(
    help="The production stack: API replicas behind HAProxy, Prometheus (deploy/compose.yaml).", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")


@stack_app.command("up")
def stack_up(
    model: Annotated[
        str, typer.Option("--model", help="The model to serve: name (its champion), name:version")
    ] = "churn",
    port: Annotated[int, typer.Option(help="The balancer's port on 127.0.0.1")] = 8088,
    prometheus_port: Annotated[int, typer.Option(help="Prometheus' port on 127.0.0.1")] = 9090,
    stats_port: Annotated[int, typer.Option(help="The balancer's stats page on 127.0.0.1")] = 8404,
    mlflow_port: Annotated[int, typer.Option(help="The stack's MLflow server on 127.0.0.1")] = 5055,
    base: Annotated[str | None, typer.Option(help="The base image (default: the Debian one made here)")] = None,
    engine: Engine = None,
    repository: Repository = "ml-project",
):
    "Start the stack with the model's image (built when missing); print where it answers and the client key's file."
    from ml_project.deploy import stack

    settings = _setup(None)
    try:
        up = stack.stack_up(
            model,
            settings,
            port,
            prometheus_port,
            stats_port,
            engine,
            base,
            repository=repository,
            mlflow_port=mlflow_port,
        )
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(
        f"{up.image} behind {up.url} (Prometheus: {up.prometheus}, MLflow: {up.mlflow}); client key in {settings.relative(up.key_file)}"
    )


@stack_app.command("down")
def stack_down(
    volumes: Annotated[bool, typer.Option(help="Also remove the prediction log and Prometheus' data")] = False,
    engine: Engine = None,
):
    "Stop and remove the stack's containers (its volumes stay unless --volumes)."
    from ml_project.deploy import stack

    settings = _setup(None, quiet=True)
    try:
        stack.stack_down(settings, engine, volumes)
    except _project_errors() as e:
        _fail(str(e), 1)
    left = stack.stack_status(settings, engine)
    if left:
        _fail(f"still there: {', '.join(left)}", 1)
    typer.echo("stack stopped")


@stack_app.command("status")
def stack_status(engine: Engine = None):
    "The stack's containers and their states (exit 1 when one is not running)."
    from ml_project.deploy import stack

    found = stack.stack_status(_setup(None, quiet=True), engine)
    for name, state in found.items():
        typer.echo(f"{name}: {state}")
    if not found or any(state != "running" for state in found.values()):
        raise typer.Exit(1)


@app.command("release")
def release(
    model: Annotated[str, typer.Option("--model", help="The registered model whose champion to release")] = "churn",
    rollback: Annotated[bool, typer.Option(help="Return to the slot that served before the last release")] = False,
    image: Annotated[
        str | None,
        typer.Option(help="Release this image (its label must hold the champion's hash) instead of building"),
    ] = None,
    p50_ms: Annotated[float, typer.Option(help="The load gate's one-row p50 goal, in ms")] = 3.0,
    p99_ms: Annotated[float, typer.Option(help="The load gate's one-row p99 goal, in ms")] = 10.0,
):
    "Release the champion onto the running stack: the gates, each reported, then blue/green; exit 1 if it stops."
    from ml_project.deploy import release as releases

    settings = _setup(None)

    def report(gate):
        mark = "passed" if gate.passed else "FAILED"
        typer.echo(f"  {gate.name:10s} {mark} ({gate.seconds:.1f} s): {gate.detail.splitlines()[0]}")

    typer.echo(f"rolling back {model}" if rollback else f"releasing {model}'s champion")
    try:
        done = releases.release(model, settings, rollback, image, (p50_ms, p99_ms), report=report)
    except _project_errors() as e:
        _fail(str(e), 1)
    if not done.ok:
        _fail(f"not released: {done.reason}", 1)
    switch = done.gates[-1].detail
    typer.echo(f"{done.status}: {done.model['name']} v{done.model['version']} ({done.image}), {switch}")
