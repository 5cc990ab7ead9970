"""The `ml-project` command: run the lifecycle's stages from a shell.

Hand-written (not exported from a notebook): it only wires the stages' functions to a command line.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and manage ml-project experiments. Settings come from settings.ini and ML_PROJECT_* variables.")


class Mode(str, Enum):
    careful = "careful"
    fast = "fast"


ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Experiment config (YAML), e.g. configs/experiment_001.yaml")]
ModeOption = Annotated[Optional[Mode], typer.Option("--mode", "-m", help="careful: full data and folds; fast: a small sample. Default: settings.ini")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config value: dotted.key=value (repeatable)")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and the results, not the stages as they go")]


def _version(value: bool):
    if value:
        from ml_project import __version__
        typer.echo(f"ml-project {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")] = False):
    "Train, evaluate and manage ml-project experiments. Settings come from settings.ini and ML_PROJECT_* variables."
    try:  # `kill -USR1 <pid>` prints where a stuck command is (not on Windows, nor without a real stderr)
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (AttributeError, ValueError, OSError): pass


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _known_errors():
    from ml_project.config import ConfigError
    from ml_project.data import DataValidationError, RawDataError
    from ml_project.registry import ModelIntegrityError
    return (ConfigError, RawDataError, DataValidationError, ModelIntegrityError, KeyError, ValueError, FileNotFoundError)


def _message(error: Exception) -> str:
    "An error's message; a KeyError's without the quotes its repr adds."
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _interrupt(signum, frame): raise KeyboardInterrupt(f"signal {signum}")


class _Stderr(logging.StreamHandler):
    "A handler writing to whatever `sys.stderr` is when a message comes (a test runner swaps it per command)."
    @property
    def stream(self): return sys.stderr

    @stream.setter
    def stream(self, value): pass


def _setup(mode: Mode | None, quiet: bool = False):
    "Logging to stderr (the stages as they go, unless quiet), SIGTERM handled as Ctrl-C, and the settings."
    ours = logging.getLogger("ml_project")
    if not any(isinstance(h, _Stderr) for h in ours.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("papermill", "alembic", "mlflow"): logging.getLogger(noisy).setLevel(logging.WARNING)
    # With a tracking server MLflow prints two links per run it closes: a tuning run's trials would flood the output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    signal.signal(signal.SIGTERM, _interrupt)  # `kill <pid>` stops a run as Ctrl-C does: its MLflow run is closed as KILLED
    from ml_project.config import get_settings
    return get_settings(**({"mode": mode.value} if mode else {}))


INTERRUPTED = "interrupted: the MLflow run was closed as KILLED; nothing was saved to models/ or registered"


@app.command()
def train(config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment config(s) (YAML), e.g. configs/experiment_001.yaml")],
          mode: ModeOption = None, set: SetOption = None, quiet: QuietOption = False):
    "Train experiments: data, validation, features, cross-validation, test evaluation, MLflow run and registry, models/."
    try:
        settings = _setup(mode, quiet)
        from ml_project.config import load_config
        from ml_project.experiment import format_summary, run_experiment, summary_table
        from ml_project.models import check_configs
        experiments = [load_config(path, set) for path in config]
        check_configs(experiments, settings)  # every config, against its data and model, before the first trains
        results = []
        for experiment in experiments:
            results.append(run_experiment(experiment, settings, check=False))
            typer.echo(format_summary(results[-1], settings) + "\n")
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except _known_errors() as e:
        _fail(_message(e), 1)
    if len(results) > 1:
        typer.echo("Summary (each problem's selection metric; the champion is chosen on validation, test is only reported;")
        typer.echo("champion: holds the alias now):")
        typer.echo(summary_table(results, settings).round(4).to_string())


ModelArgument = Annotated[str, typer.Option("--model", help="A saved model (models/churn_xgboost) or a registered one: churn (its champion), churn@challenger, churn:3")]


@app.command()
def evaluate(model: ModelArgument,
             out: Annotated[Optional[Path], typer.Option(help="Where to write the plots and report (default: evaluation/ beside the model)")] = None):
    "Print a saved or registered model's metrics on the test split it recorded, and write the plots and a report."
    try:
        settings = _setup(None)
        from ml_project.evaluation import evaluate_saved_model
        saved = evaluate_saved_model(model, settings, out)  # checks the recorded sha256 before unpickling
    except _known_errors() as e:
        _fail(_message(e), 1)
    import pandas as pd
    meta, evaluation, files = saved.metadata, saved.evaluation, saved.files
    typer.echo(f"{meta['experiment']}: {saved.rows:,} test rows ({meta['mode']} mode, data md5 {meta['data_md5']})")
    typer.echo(pd.Series(evaluation.metrics).round(4).to_frame("test").to_string())
    if meta["task"] == "classification":
        typer.echo(f"\nconfusion matrix at threshold {evaluation.threshold if evaluation.threshold is not None else 'argmax'}:")
        typer.echo(evaluation.confusion.to_string())
    typer.echo(f"\nwrote {len(files)} files to {files[0].parent}: " + ", ".join(f.name for f in files))


@app.command()
def predict(model: ModelArgument,
            input: Annotated[Path, typer.Option("--input", "-i", help="Rows to score: a .csv or .parquet file with the model's input columns")],
            output: Annotated[Path, typer.Option("--output", "-o", help="Scored rows (Parquet): the id column, the inputs, prediction and probabilities")],
            rejects: Annotated[Optional[Path], typer.Option(help="Rows that could not be scored, with the reason (CSV; default: <output>.rejects.csv)")] = None,
            chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read and scored at a time: memory is bounded by this")] = 50_000,
            inputs: Annotated[bool, typer.Option(help="Write the input columns beside the predictions")] = True,
            progress: Annotated[Optional[bool], typer.Option(help="A progress bar (default: when stderr is a terminal)")] = None):
    """Score a file with a saved or registered model, in chunks; bad rows go to a reject file with the reason.

    Exit code: 0 every row scored; 3 some rows rejected (the others are scored and written); 1 nothing written (an error)."""
    try:
        settings = _setup(None)
        from ml_project.predictor import ModelPredictor, PredictionInputError, score_file
        predictor = ModelPredictor.load(model, settings)
        typer.echo(f"model: {predictor.name}" + (f" v{predictor.version}" if predictor.version else "") + f" ({predictor.task})", err=True)
        summary = score_file(predictor, input, output, rejects, chunk_rows, inputs, sys.stderr.isatty() if progress is None else progress)
    except PredictionInputError as e:
        _fail(f"{input}: {e}", 1)
    except _known_errors() as e:
        _fail(_message(e), 1)
    typer.echo(str(summary))
    for warning in summary.warnings: typer.echo(f"warning: {warning}", err=True)
    if summary.rejected: raise typer.Exit(3)


@app.command()
def run(config: ConfigOption, mode: ModeOption = None, set: SetOption = None, quiet: QuietOption = False):
    "Run the experiment notebook with papermill as one MLflow run; the executed notebook goes to runs/<run id>/."
    try:
        settings = _setup(mode, quiet)
        from ml_project.config import load_config
        from ml_project.experiment import run_notebooks
        from ml_project.models import check_configs
        experiment = load_config(config, set)
        check_configs([experiment], settings)
        outcome = run_notebooks(config, experiment, settings, list(set or []), progress=not quiet)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except _known_errors() as e:
        _fail(_message(e), 1)
    typer.echo(outcome.message)
    if not outcome.ok: raise typer.Exit(1)


@app.command()
def tune(config: ConfigOption, trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="Trials to add (default: the config's; none when only --timeout is given)")] = None,
         timeout: Annotated[Optional[float], typer.Option("--timeout", "-t", help="Seconds for the search")] = None,
         workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes sharing the study")] = 1,
         storage: Annotated[Optional[str], typer.Option(help="Study storage: an SQLAlchemy URL (e.g. postgresql+psycopg://...) or journal:<file>; default: the optuna_storage setting, else SQLite under runs/")] = None,
         refit: Annotated[bool, typer.Option(help="Refit the best parameters, register them as challenger, promote if better")] = True,
         mode: ModeOption = None, set: SetOption = None):
    "Tune a config's model with Optuna: a resumable study, K workers, nested MLflow runs, plots, refit and promotion."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.models import check_configs
        from ml_project.tuning import decode_params, tune as run_tuning, tuning_metric
        experiment = load_config(config, set)
        check_configs([experiment], settings, search=True)
        result = run_tuning(experiment, settings, n_trials=trials, timeout=timeout, storage=storage, workers=workers,
                            refit=refit, progress=True)
    except KeyboardInterrupt:
        _fail("interrupted: finished trials are kept, the running ones marked failed; run the same command to resume", 130)
    except _known_errors() as e:
        _fail(_message(e), 1)
    study, metric = result.study, tuning_metric(experiment)
    added = ", ".join(f"{n} {state}" for state, n in result.added.items() if n)
    typer.echo(f"study {study.study_name}: {len(result.trials)} trials in all; this run added {sum(result.added.values())} "
               f"({added or 'none'}) in {result.seconds:.1f}s")
    if result.orphans_failed: typer.echo(f"trials {result.orphans_failed} had lost their worker: marked failed")
    if experiment.tuning.families:
        from ml_project.search import family_summary, winning_config
        typer.echo(family_summary(study).round(4).to_string())
    try:
        best = (winning_config(experiment, study).model.params if experiment.tuning.families
                else decode_params(study.best_params, experiment.tuning.search_space))
        family = f"{study.best_params['family']} " if experiment.tuning.families else ""
        typer.echo(f"best CV {metric} {study.best_value:.4f} (trial {study.best_trial.number}): {family}{best}")
    except ValueError: typer.echo("no trial finished yet")
    if result.refit and result.refit.config.model.type == "ensemble":  # the families' leaders blended beat the winner alone
        r, members = result.refit, result.refit.config.model.params["members"]
        cv = f"; its CV {metric} {r.cv[metric].mean():.4f} refitted" if metric in r.cv else ""
        weights = ", ".join(f"{m['family']} x{m['weight']:g}" for m in members)
        typer.echo(f"ensemble: {weights} (weights from the leaders' out-of-fold predictions{cv})")
    if result.refit:
        r = result.refit
        metric = experiment.selection_metric
        typer.echo(f"refit: validation {metric} {r.valid.get(metric, float('nan')):.4f}, test {r.test[metric]:.4f}; registered "
                   f"{r.registered[0]} v{r.registered[1]}; {r.promotion.reason}"
                   + ("; it is the new champion" if r.champion else "; it is the challenger, the champion stays"))
    typer.echo(f"MLflow parent run {result.parent_run_id}; plots: {', '.join(str(settings.relative(p)) for p in result.plots)}")


@app.command()
def data(config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment config(s) whose data to prepare")],
         mode: ModeOption = None):
    "Acquire (once), verify, validate, split and write the processed data of each config."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.features import load_splits
        for path in config:
            splits = load_splits(load_config(path), settings)
            rows = ", ".join(f"{k} {v:,}" for k, v in splits.rows.items())
            dataset = splits.dataset
            typer.echo(f"{path}: {settings.relative(dataset.raw_path)} md5 {dataset.md5} valid; {rows} -> {settings.relative(splits.manifest)}")
    except _known_errors() as e:
        _fail(_message(e), 1)


EncodingOption = Annotated[Optional[str], typer.Option(help="The file's text encoding (default: UTF-8, else latin-1, with a note)")]
SepOption = Annotated[Optional[str], typer.Option(help="The column separator (default: sniffed from the file)")]


def _write_new(path: Path, text: str):
    "Write `text` to `path`, refusing to replace a file that is there."
    if path.exists(): _fail(f"{path} exists; not overwritten", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}")


@app.command("infer-schema")
def infer_schema_command(csv: Annotated[Path, typer.Argument(help="A CSV file to draft a schema from")],
                         out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of printing")] = None,
                         max_levels: Annotated[int, typer.Option(help="Text columns with at most this many values become categories")] = 50,
                         encoding: EncodingOption = None, sep: SepOption = None):
    "Draft a column schema (YAML) for a new data set; review it, then name it as data.schema in your config."
    from ml_project.data import draft_schema_yaml, read_draft
    try:
        frame, options, notes = read_draft(csv, {k: v for k, v in {"encoding": encoding, "sep": sep}.items() if v})
    except _known_errors() as e:
        _fail(_message(e), 1)
    for note in notes: typer.echo(f"note: {note}", err=True)
    text = draft_schema_yaml(frame, csv.name, options, max_levels)
    if out: _write_new(out, text)
    else: typer.echo(text)


@app.command("init-config")
def init_config(csv: Annotated[Path, typer.Argument(help="Your data: a CSV file (inside the project, e.g. data/external/my.csv)")],
                target: Annotated[str, typer.Option("--target", "-t", help="The column to predict")],
                name: Annotated[Optional[str], typer.Option(help="The experiment's name (default: from the file name)")] = None,
                encoding: EncodingOption = None, sep: SepOption = None):
    "Write a minimal, checked config (configs/<name>.yaml) and a schema (configs/schemas/<name>.yaml) for a new CSV; then train it."
    try:
        settings = _setup(None)
        from ml_project.config import load_config
        from ml_project.data import draft_config_yaml, draft_schema_yaml, read_draft
        from ml_project.models import check_config
        frame, options, notes = read_draft(csv, {k: v for k, v in {"encoding": encoding, "sep": sep}.items() if v})
        name = name or csv.stem.replace(" ", "_")
        config_file, schema_file = settings.configs_dir / f"{name}.yaml", settings.configs_dir / "schemas" / f"{name}.yaml"
        config_text = draft_config_yaml(frame, csv, target, name, settings.relative(schema_file), options, settings)
    except _known_errors() as e:
        _fail(_message(e), 1)
    for note in notes: typer.echo(f"note: {note}", err=True)
    _write_new(schema_file, draft_schema_yaml(frame, csv.name, options))
    _write_new(config_file, config_text)
    problems = check_config(load_config(config_file), settings)
    for problem in problems: typer.echo(f"check: {problem}", err=True)
    typer.echo(f"next: review both files, then: ml-project train -c {settings.relative(config_file)}")


@app.command()
def serve(model: Annotated[str, typer.Option("--model", help="A registered model (its champion, followed as it changes), name@alias, name:version, or a folder")] = "churn",
          host: Annotated[str, typer.Option(help="Address to listen on (beyond 127.0.0.1 only with API keys, or --insecure)")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port")] = 8080,
          workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
          ssl_certfile: Annotated[Optional[str], typer.Option(help="TLS certificate (PEM)")] = None,
          ssl_keyfile: Annotated[Optional[str], typer.Option(help="TLS private key (PEM)")] = None,
          insecure: Annotated[bool, typer.Option(help="Allow a non-local address without API keys")] = False,
          mode: ModeOption = None):
    "Serve a model over HTTP (FastAPI under uvicorn): /predict, /health, /ready, /metadata, /metrics, /docs."
    try:
        settings = _setup(mode)
        from ml_project.serving import serve as run_service
        typer.echo(f"serving {model} on {'https' if ssl_certfile else 'http'}://{host}:{port} (docs: /docs)", err=True)
        run_service(model, settings, host, port, workers, ssl_certfile, ssl_keyfile, insecure)
    except _known_errors() as e:
        _fail(_message(e), 1)


@app.command()
def monitor(model: ModelArgument,
            input: Annotated[Optional[Path], typer.Option("--input", "-i", help="A file scored by `ml-project predict` (default: the prediction log)")] = None,
            last: Annotated[Optional[int], typer.Option(min=1, help="Only the newest N rows")] = None,
            since: Annotated[Optional[str], typer.Option(help="Only rows from this time on (ISO 8601, UTC)")] = None,
            window: Annotated[Optional[str], typer.Option(help="Only the rows of this last period, e.g. 7d, 12h")] = None,
            labels: Annotated[Optional[Path], typer.Option(help="Late labels (CSV): request_id [, row] or the id column, and the target or 'label'")] = None,
            out: Annotated[Optional[Path], typer.Option(help="Where report.html and summary.json go (default: runs/monitoring/<model>-<time>/)")] = None,
            config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Take the thresholds (monitoring:) from this config, and retrain with it (default: the one the model was trained with)")] = None,
            retrain: Annotated[bool, typer.Option("--retrain", help="On a drift or decay alert, train the model's config again (on its data plus the rows given --labels); the champion rule decides")] = False,
            mode: ModeOption = None):
    """Data quality, drift of the inputs and predictions, performance with late labels and the service's health, against the model's reference.

    Exit code: 0 no alert; 4 an alert fired (the summary says which); 1 an error."""
    try:
        settings = _setup(mode)
        import json as _json
        from datetime import datetime, timezone
        import pandas as pd
        from ml_project.config import MonitoringConfig, load_config
        from ml_project.monitoring import join_labels, log_report, logged_rows, monitor_rows, write_monitoring_report
        from ml_project.registry import fetch_model
        from concurrent.futures import ThreadPoolExecutor
        def read_log():
            from ml_project.serving import read_prediction_log
            return read_prediction_log(settings.prediction_log_dir)
        with ThreadPoolExecutor(1) as reader:  # Arrow reads the log, mostly without the GIL, while MLflow finds the model
            log = reader.submit(read_log) if input is None else None
            folder, ref = fetch_model(model, settings)
            metadata = _json.loads((folder / "metadata.json").read_text())
            name = ref["name"] or metadata.get("problem", "")
            if window: since = str(pd.Timestamp.now(tz="UTC") - pd.Timedelta(window))
            if input is not None:
                rows = pd.read_parquet(input) if input.suffix == ".parquet" else pd.read_csv(input)
                if last: rows = rows.tail(last)
            else: rows = logged_rows(settings, name, ref["version"], last, since, log=log.result())
        truth = join_labels(rows, pd.read_csv(labels), metadata["target"], metadata.get("id_column")) if labels else None
        thresholds = load_config(config).monitoring if config else MonitoringConfig(**(metadata.get("config") or {}).get("monitoring", {}))
        report = monitor_rows(folder, rows, truth, thresholds, model=name, version=ref["version"])
        out = out or settings.runs_dir / "monitoring" / f"{name or folder.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
        page, summary = write_monitoring_report(report, rows, out)
        log_report(report, [page, summary], settings, metadata.get("problem") or name)
    except _known_errors() as e:
        _fail(_message(e), 1)
    typer.echo(f"{report.rows:,} rows of {name}" + (f" v{ref['version']}" if ref["version"] else "") +
               f"; {report.drift.share:.0%} of the inputs drifted; report: {page}; summary: {summary}")
    for alert in report.alerts: typer.echo(f"alert: {alert}")
    if retrain: _retrain(report, load_config(config) if config else None, metadata, settings, rows, truth, summary)
    if report.alerts: raise typer.Exit(4)


def _retrain(report, config, metadata: dict, settings, rows, labels, summary_path: Path):
    "monitor --retrain: train the model's config again when drift or decay fired; record what happened in the summary."
    import json as _json
    from ml_project.monitoring import retrain_reasons, retraining_config
    reasons = retrain_reasons(report)
    summary = _json.loads(summary_path.read_text())
    if not reasons:
        typer.echo("retrain: no drift or decay alert, nothing to retrain")
        summary["retrain"] = {"reasons": []}
    else:
        try:
            from ml_project.config import ExperimentConfig
            from ml_project.experiment import format_summary, run_experiment
            base = config or ExperimentConfig.model_validate(metadata["config"])
            new = retraining_config(base, settings, rows, labels)
            labelled = 0 if labels is None else int(labels.notna().sum())
            typer.echo(f"retrain: {'; '.join(reasons)} -> training {new.experiment.name} on {new.data.source}"
                       + (f" ({labelled:,} labelled new rows added)" if labelled else " (no labelled new rows: the same data)"))
            result = run_experiment(new, settings)
        except _known_errors() as e:
            _fail(f"retrain failed: {_message(e)}", 1)
        typer.echo(format_summary(result, settings))
        summary["retrain"] = {"reasons": reasons, "experiment": new.experiment.name, "data": new.data.source, "run_id": result.run_id,
                              "version": result.registered[1] if result.registered else None,
                              "promoted": bool(result.promotion and result.promotion.promoted)}
    summary_path.write_text(_json.dumps(summary, indent=2, default=str))


keys_app = typer.Typer(help="API keys of the prediction service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(key_id: Annotated[str, typer.Argument(help="A name for the key (logged instead of the key)")],
             role: Annotated[list[str], typer.Option("--role", "-r", help="predict and/or admin (repeatable)")] = ["predict"],
             file: Annotated[Optional[Path], typer.Option(help="The keys file (default: the file settings.ini's api_keys names)")] = None):
    "Make an API key: prints it once, stores only its hash."
    try:
        settings = _setup(None, quiet=True)
        from ml_project.serving import add_api_key
        if file is None:
            kind, _, where = settings.api_keys.partition(":")
            if kind != "file": _fail("settings.ini's api_keys names no file (api_keys = file:secrets/api_keys): give --file", 1)
            file = Path(where) if Path(where).is_absolute() else settings.root / where
        key = add_api_key(file, key_id, role)
    except _known_errors() as e:
        _fail(_message(e), 1)
    typer.echo(f"{key}\n(key '{key_id}', roles {','.join(role)}: shown only now; its hash is in {file})")



services_app = typer.Typer(help="PostgreSQL and an MLflow server on it, for a team (under .services/).", no_args_is_help=True)
app.add_typer(services_app, name="services")
PgPort = Annotated[Optional[int], typer.Option("--pg-port", help="PostgreSQL's port on 127.0.0.1 (default: the last one, else 5433)")]
MlflowPort = Annotated[Optional[int], typer.Option("--mlflow-port", help="The MLflow server's port on 127.0.0.1 (default: the last one, else 5000)")]


@services_app.command("start")
def services_start(pg_port: PgPort = None, mlflow_port: MlflowPort = None):
    "Start PostgreSQL (a cluster under .services/, made the first time) and the MLflow server on it; print their URLs."
    from ml_project import services
    settings = _setup(None, quiet=True)
    try: started = services.start(services.services_for(settings, pg_port, mlflow_port))
    except (RuntimeError, *_known_errors()) as e: _fail(_message(e), 1)
    typer.echo(services.describe(started))


@services_app.command("stop")
def services_stop():
    "Stop the MLflow server and PostgreSQL; their data stays for the next start."
    from ml_project import services
    settings = _setup(None, quiet=True)
    try: services.stop(services.services_for(settings))
    except (RuntimeError, *_known_errors()) as e: _fail(_message(e), 1)
    typer.echo("stopped: MLflow server and PostgreSQL")


@services_app.command("status")
def services_status():
    "Whether PostgreSQL and the MLflow server answer (exit 1 when one does not)."
    from ml_project import services
    found = services.status(services.services_for(_setup(None, quiet=True)))
    for name, up in found.items(): typer.echo(f"{name}: {'up' if up else 'down'}")
    if not all(found.values()): raise typer.Exit(1)

def main():  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
