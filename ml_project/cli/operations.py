"""`ml-project` commands of operations: serve, monitor, keys, services.

Hand-written: each command parses its options, calls one notebook-exported function and prints what it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ml_project.cli.common import (
    ModelArgument,
    ModeOption,
    _fail,
    _project_errors,
    _setup,
    app,
)


@app.command()
def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            envvar="ML_PROJECT_SERVE_MODEL",  # the image sets these four (deploy/Containerfile)
            help="A registered model (its champion, followed as it changes), name@alias, name:version, or a folder",
        ),
    ] = "churn",
    host: Annotated[
        str,
        typer.Option(
            envvar="ML_PROJECT_SERVE_HOST",
            help="Address to listen on (beyond 127.0.0.1 only with API keys, or --insecure)",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="ML_PROJECT_SERVE_PORT", help="Port")] = 8080,
    workers: Annotated[
        int, typer.Option(min=1, envvar="ML_PROJECT_SERVE_WORKERS", help="uvicorn worker processes")
    ] = 1,
    ssl_certfile: Annotated[str | None, typer.Option(help="TLS certificate (PEM)")] = None,
    ssl_keyfile: Annotated[str | None, typer.Option(help="TLS private key (PEM)")] = None,
    insecure: Annotated[bool, typer.Option(help="Allow a non-local address without API keys")] = False,
    mode: ModeOption = None,
):
    "Serve a model over HTTP (FastAPI under uvicorn): /predict, /health, /ready, /metadata, /metrics, /docs."
    try:
        settings = _setup(mode)
        from ml_project.serve.app import serve as run_service

        typer.echo(f"serving {model} on {'https' if ssl_certfile else 'http'}://{host}:{port} (docs: /docs)", err=True)
        run_service(model, settings, host, port, workers, ssl_certfile, ssl_keyfile, insecure)
    except _project_errors() as e:
        _fail(str(e), 1)


MonitorInput = Annotated[
    Path | None,
    typer.Option("--input", "-i", help="A file scored by `ml-project predict` (default: the prediction log)"),
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(help="Late labels (CSV): request_id [, row] or the id column, and the target or 'label'"),
]
ReportOption = Annotated[
    Path | None,
    typer.Option(help="Where report.html and summary.json go (default: runs/monitoring/<model>-<time>/)"),
]
ThresholdsOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Take the thresholds (monitoring:) from this config, and retrain with it (default: the one the model was trained with)",
    ),
]
RetrainOption = Annotated[
    bool,
    typer.Option(
        "--retrain",
        help="On a drift or decay alert, train the model's config again (on its data plus the rows given --labels); the champion rule decides",
    ),
]


@app.command()
def monitor(
    model: ModelArgument,
    input: MonitorInput = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the newest N rows")] = None,
    since: Annotated[str | None, typer.Option(help="Only rows from this time on (ISO 8601, UTC)")] = None,
    window: Annotated[str | None, typer.Option(help="Only the rows of this last period, e.g. 7d, 12h")] = None,
    labels: LabelsOption = None,
    out: ReportOption = None,
    config: ThresholdsOption = None,
    retrain: RetrainOption = False,
    mode: ModeOption = None,
    stack: Annotated[
        bool, typer.Option(help="Read the running stack's prediction log (every replica's, from its volume)")
    ] = False,
):
    """Data quality, drift of the inputs and predictions, performance with late labels and the service's health, against the model's reference.

    Exit code: 0 no alert; 4 an alert fired (the summary says which); 1 an error."""
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.monitor.check import monitor_model

        chosen = load_config(config) if config else None
        if stack:
            import dataclasses

            from ml_project.deploy.stack import prediction_log

            with prediction_log(settings) as folder:
                stacked = dataclasses.replace(settings, prediction_log_dir=folder)
                run = monitor_model(model, stacked, input, last, since, window, labels, out, chosen)
        else:
            run = monitor_model(model, settings, input, last, since, window, labels, out, chosen)
    except _project_errors() as e:
        from ml_project.errors import NothingToMonitor

        if isinstance(e, NothingToMonitor):  # a champion that has just moved: nothing has gone wrong
            typer.echo(str(e))
            raise typer.Exit(0) from None
        _fail(str(e), 1)
    report = run.report
    typer.echo(
        f"{report.rows:,} rows of {run.name}"
        + (f" v{run.version}" if run.version else "")
        + f"; {report.drift.share:.0%} of the inputs drifted; report: {run.page}; summary: {run.summary}"
    )
    for alert in report.alerts:
        typer.echo(f"alert: {alert}")
    if retrain:
        _retrain(run, chosen, settings)
    if report.alerts:
        raise typer.Exit(4)


def _retrain(run, config, settings):
    "monitor --retrain: say what the report calls for, train it, print the outcome (recorded in the summary)."
    from ml_project.monitor.retrain import retrain as run_retraining
    from ml_project.monitor.retrain import retrain_plan
    from ml_project.train.experiment import format_summary

    try:
        plan = retrain_plan(run.report, run.metadata, settings, run.rows, run.labels, config)
        typer.echo(plan.describe())
        result = run_retraining(plan, settings, run.summary)
    except _project_errors() as e:
        _fail(f"retrain failed: {e}", 1)
    if result is not None:
        typer.echo(format_summary(result, settings))


keys_app = typer.Typer(help="API keys of the prediction service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


KeysFileOption = Annotated[
    Path | None, typer.Option("--file", help="The keys file (default: the file settings.ini's api_keys names)")
]


def _keys_file(settings, file: Path | None) -> Path:
    "The keys file: `--file`, else the file settings.ini's `api_keys` names (a clear error when it names none)."
    if file is not None:
        return file
    kind, _, where = settings.api_keys.partition(":")
    if kind != "file":
        _fail("settings.ini's api_keys names no file (api_keys = file:secrets/api_keys): give --file", 1)
    return Path(where) if Path(where).is_absolute() else settings.root / where


@keys_app.command("add")
def keys_add(
    key_id: Annotated[str, typer.Argument(help="A name for the key (logged instead of the key)")],
    role: Annotated[list[str], typer.Option("--role", "-r", help="predict and/or admin (repeatable)")] = ["predict"],  # noqa: B006 (typer's default; never changed)
    file: KeysFileOption = None,
):
    "Make an API key: prints it once, stores only its hash."
    try:
        settings = _setup(None, quiet=True)
        from ml_project.serve.keys import add_api_key

        file = _keys_file(settings, file)
        key = add_api_key(file, key_id, role)
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(f"{key}\n(key '{key_id}', roles {','.join(role)}: shown only now; its hash is in {file})")


@keys_app.command("list")
def keys_list(file: KeysFileOption = None):
    "The keys' ids and roles (never the keys: only their hashes are stored)."
    try:
        settings = _setup(None, quiet=True)
        from ml_project.serve.keys import parse_api_keys

        file = _keys_file(settings, file)
        keys = parse_api_keys(file.read_text(), str(file)) if file.is_file() else []
    except _project_errors() as e:
        _fail(str(e), 1)
    for k in keys:
        typer.echo(f"{k.key_id}  {','.join(sorted(k.roles))}")
    if not keys:
        typer.echo(f"no keys in {file}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, as `keys add` was given it")],
    file: KeysFileOption = None,
):
    "Revoke a key by its id: its line leaves the keys file; a service started after that refuses it."
    try:
        settings = _setup(None, quiet=True)
        from ml_project.serve.keys import revoke_api_key

        file = _keys_file(settings, file)
        revoke_api_key(file, key_id)
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(
        f"revoked '{key_id}' in {file}; restart the service (or `ml-project release`) so it reads the file again"
    )


models_app = typer.Typer(help="Registered models: their champions, versions and decisions.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(mode: ModeOption = None):
    "Every registered model: its champion version, how many versions, and the metric its champion is chosen on."
    try:
        settings = _setup(mode, quiet=True)
        from ml_project.train.champion import registered_models

        table = registered_models(settings)
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(table.to_string() if len(table) else f"no registered model in {settings.mlflow_tracking_uri}")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="A registered model, e.g. churn (fast mode's: churn__fast)")],
    mode: ModeOption = None,
):
    "A registered model's champion (why, its metrics, when, its data's hash) and every version with its decision."
    try:
        settings = _setup(mode, quiet=True)
        from ml_project.train.champion import registered_versions

        versions = registered_versions(name, settings)
    except _project_errors() as e:
        _fail(str(e), 1)
    champion = versions[versions["aliases"].str.contains("champion")]
    if len(champion):
        c, number = champion.iloc[0], champion.index[0]
        typer.echo(f"{name}: champion v{number} ({c['experiment']}, registered {c['registered']}, data md5 "
                   f"{c['data_md5']}): {c['metric']} {c['valid']:.4f} on validation, {c['test']:.4f} on test")  # fmt: skip
        typer.echo(f"why: {c['decision']}\n")
    else:
        typer.echo(f"{name}: no champion\n")
    shown = versions.drop(columns=["data_md5"]).round(4)
    typer.echo(shown.to_string(max_colwidth=70))


services_app = typer.Typer(
    help="A team's services under .services/: PostgreSQL and an MLflow server on it; a Dask cluster (--dask N).",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services")
PgPort = Annotated[
    int | None, typer.Option("--pg-port", help="PostgreSQL's port on 127.0.0.1 (default: the last one, else 5433)")
]
MlflowPort = Annotated[
    int | None,
    typer.Option("--mlflow-port", help="The MLflow server's port on 127.0.0.1 (default: the last one, else 5000)"),
]


@services_app.command("start")
def services_start(
    pg_port: PgPort = None,
    mlflow_port: MlflowPort = None,
    dask: Annotated[
        int, typer.Option("--dask", min=0, help="Also start a Dask cluster: a scheduler and this many workers")
    ] = 0,
    tracking: Annotated[bool, typer.Option(help="Start PostgreSQL and the MLflow server (--no-tracking: not)")] = True,
    dask_port: Annotated[int, typer.Option(help="The Dask scheduler's port on 127.0.0.1")] = 8786,
    threads: Annotated[int, typer.Option(min=1, help="Threads per Dask worker")] = 1,
    memory_limit: Annotated[
        str, typer.Option(help="Memory per Dask worker, e.g. 4GiB (default: 80 % of this machine's, shared out)")
    ] = "",
):
    "Start PostgreSQL (a cluster under .services/, made the first time) and the MLflow server on it, and with --dask N a Dask cluster; print what to point the project at."
    from ml_project.search import services

    settings = _setup(None, quiet=True)
    try:
        if tracking:
            typer.echo(services.describe(services.start(services.services_for(settings, pg_port, mlflow_port))))
        if dask:
            from ml_project.cluster import engine

            cluster = engine.local_cluster(settings, dask_port, dask)
            cluster.threads, cluster.memory_limit = threads, memory_limit
            engine.start_cluster(cluster)
            typer.echo(
                f"Dask: a scheduler on {cluster.address} and {cluster.workers} workers of {cluster.threads} thread(s), "
                f"{cluster.memory_limit} each (logs in {settings.relative(cluster.folder)})\n"
                f"  export ML_PROJECT_DASK_SCHEDULER={cluster.address}   # or --cluster {cluster.address}"
            )
    except _project_errors() as e:
        _fail(str(e), 1)


@services_app.command("stop")
def services_stop():
    "Stop the Dask cluster, the MLflow server and PostgreSQL (whichever run); their data stays for the next start."
    from ml_project.cluster import engine
    from ml_project.search import services

    settings = _setup(None, quiet=True)
    try:
        cluster = engine.local_cluster(settings)
        if any(engine.cluster_status(cluster).values()):
            engine.stop_cluster(cluster)
            typer.echo("stopped: the Dask cluster")
        found = services.services_for(settings)
        if found.data.is_dir() or found.mlflow_pid.exists():
            services.stop(found)
            typer.echo("stopped: MLflow server and PostgreSQL")
    except _project_errors() as e:
        _fail(str(e), 1)


@services_app.command("status")
def services_status():
    "Whether PostgreSQL and the MLflow server answer, and the Dask cluster's processes when it was started (exit 1 when one is down)."
    from ml_project.cluster import engine
    from ml_project.search import services

    settings = _setup(None, quiet=True)
    found = services.status(services.services_for(settings))
    cluster = engine.local_cluster(settings)
    if cluster.folder.is_dir():
        found |= {f"dask {process}": up for process, up in engine.cluster_status(cluster).items()}
    for name, up in found.items():
        typer.echo(f"{name}: {'up' if up else 'down'}")
    if not all(found.values()):
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
