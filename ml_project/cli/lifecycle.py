"""`ml-project` commands of the lifecycle: train, evaluate, predict, run, tune, data, infer-schema, init-config.

Hand-written: each command parses its options, calls one notebook-exported function and prints what it returns.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ml_project.cli.common import (
    INTERRUPTED,
    ConfigOption,
    ModelArgument,
    ModeOption,
    QuietOption,
    SetOption,
    VerboseOption,
    _fail,
    _project_errors,
    _setup,
    app,
)

log = logging.getLogger("ml_project.cli")


@app.command()
def train(
    config: Annotated[
        list[Path], typer.Option("--config", "-c", help="Experiment config(s) (YAML), e.g. configs/experiment_001.yaml")
    ],
    mode: ModeOption = None,
    set: SetOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Train on the Dask cluster at this scheduler address (XGBoost configs; training.engine: dask "
            "does the same with the dask_scheduler setting)",
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="With --cluster: train on this table, read in place, instead of the config's data (a .parquet "
            "file or folder, .csv file(s) or a glob; local or an fsspec URL)",
        ),
    ] = None,
    sample_rows: Annotated[
        int,
        typer.Option(
            min=100, help="With --cluster: at most this many training rows fit the feature and preprocessing steps"
        ),
    ] = 200_000,
):
    """Train experiments: data, validation, features, cross-validation, test evaluation, MLflow run and registry, models/.

    With --cluster (or training.engine: dask) an XGBoost config trains on a Dask cluster's workers."""
    try:
        settings = _setup(mode, quiet, verbose)
        from ml_project.config import load_config
        from ml_project.errors import ConfigError
        from ml_project.train.experiment import format_summary, run_experiment, summary_table
        from ml_project.train.preflight import check_configs

        experiments = [load_config(path, set) for path in config]
        on_cluster = [cluster is not None or e.training.engine == "dask" for e in experiments]
        if input is not None and not all(on_cluster):
            raise ConfigError("--input trains on a Dask cluster: add --cluster ADDRESS (or training.engine: dask)")
        if input is not None and len(experiments) > 1:
            raise ConfigError("--input names one table: give one config with it")
        if input is None:
            log.info("checking %s against %s data and model", ", ".join(str(p) for p in config),
                     "its" if len(config) == 1 else "their")  # fmt: skip
            check_configs(experiments, settings)  # every config, against its data and model, before the first trains
        results = []
        for experiment, here_or_there in zip(experiments, on_cluster):
            results.append(
                _train_on_cluster(experiment, settings, cluster, input, sample_rows)
                if here_or_there
                else run_experiment(experiment, settings, check=False)
            )
            typer.echo(format_summary(results[-1], settings) + "\n")
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except _project_errors() as e:
        _fail(str(e), 1)
    if len(results) > 1:
        typer.echo(
            "Summary (each problem's selection metric; the champion is chosen on validation, test is only reported;"
        )
        typer.echo("champion: holds the alias now):")
        typer.echo(summary_table(results, settings).round(4).to_string())


def _train_on_cluster(experiment, settings, cluster: str | None, input: str | None, sample_rows: int):
    "One experiment trained on the cluster at `cluster` (default: the dask_scheduler setting)."
    from ml_project.cluster.engine import cluster_address, connect
    from ml_project.cluster.training import check_trainable, train_on_cluster
    from ml_project.errors import ConfigError

    check_trainable(experiment)  # before connecting: a forest is refused by name whatever the cluster
    address = cluster_address(settings, cluster)
    if not address:
        raise ConfigError(
            f"{experiment.experiment.name}: training.engine is dask, but no cluster is named: give --cluster ADDRESS "
            "or set dask_scheduler (ML_PROJECT_DASK_SCHEDULER); `make cluster` starts one here"
        )
    with connect(address) as client:
        typer.echo(f"{experiment.experiment.name}: training on the cluster {address} ({len(client.nthreads())} "
                   f"workers){f'; data {input}' if input else ''}", err=True)  # fmt: skip
        return train_on_cluster(experiment, client, settings, input, sample_rows)


@app.command()
def evaluate(
    model: ModelArgument,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the plots and report (default: evaluation/ beside the model)")
    ] = None,
):
    "Print a saved or registered model's metrics on the test split it recorded, and write the plots and a report."
    try:
        settings = _setup(None)
        from ml_project.train.report import evaluate_saved_model

        saved = evaluate_saved_model(model, settings, out)  # checks the recorded sha256 before unpickling
    except _project_errors() as e:
        _fail(str(e), 1)
    import pandas as pd

    meta, evaluation, files = saved.metadata, saved.evaluation, saved.files
    typer.echo(f"{meta['experiment']}: {saved.rows:,} test rows ({meta['mode']} mode, data md5 {meta['data_md5']})")
    typer.echo(pd.Series(evaluation.metrics).round(4).to_frame("test").to_string())
    if meta["task"] == "classification":
        typer.echo(
            f"\nconfusion matrix at threshold {evaluation.threshold if evaluation.threshold is not None else 'argmax'}:"
        )
        typer.echo(evaluation.confusion.to_string())
    typer.echo(f"\nwrote {len(files)} files to {files[0].parent}: " + ", ".join(f.name for f in files))


InputOption = Annotated[
    str,
    typer.Option(
        "--input",
        "-i",
        help="Rows to score: a .csv or .parquet file with the model's input columns (with --cluster also a glob, "
        "a Parquet dataset folder or an fsspec URL)",
    ),
]
OutputOption = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="Scored rows (Parquet; with --cluster a folder, one file per partition): the id column, the inputs, "
        "prediction and probabilities",
    ),
]
RejectsOption = Annotated[
    str | None,
    typer.Option(
        help="Rows that could not be scored, with the reason (CSV; default: <output>.rejects.csv, with --cluster a "
        "folder <output>.rejects)"
    ),
]
ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Score on the Dask cluster at this scheduler address (default: the dask_scheduler setting; none: here)",
    ),
]
ChunkOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="Rows read and scored at a time: memory is bounded by this (with --cluster a partition is a Parquet "
        "file's row groups or a 64 MiB CSV block)",
    ),
]
ProgressOption = Annotated[bool | None, typer.Option(help="A progress bar (default: when stderr is a terminal)")]


@app.command()
def predict(
    model: ModelArgument,
    input: InputOption,
    output: OutputOption,
    rejects: RejectsOption = None,
    chunk_rows: ChunkOption = 50_000,
    inputs: Annotated[bool, typer.Option(help="Write the input columns beside the predictions")] = True,
    progress: ProgressOption = None,
    cluster: ClusterOption = None,
):
    """Score a file with a saved or registered model, in chunks (or on a Dask cluster); bad rows go to the rejects with the reason.

    Exit code: 0 every row scored; 3 some rows rejected (the others are scored and written); 1 nothing written (an error)."""
    try:
        settings = _setup(None)
        from ml_project.cluster.engine import cluster_address
        from ml_project.errors import PredictionInputError

        address = cluster_address(settings, cluster)
        show = sys.stderr.isatty() if progress is None else progress
        if address:
            from ml_project.cluster.engine import connect
            from ml_project.cluster.scoring import score_on_cluster

            with connect(address) as client:
                workers = len(client.nthreads())
                typer.echo(f"model: {model}; cluster: {address} ({workers} workers)", err=True)
                summary = score_on_cluster(model, input, output, client, settings, rejects, keep_inputs=inputs,
                                           progress=show)  # fmt: skip
        else:
            from ml_project.serve.batch import score_file
            from ml_project.serve.predictor import ModelPredictor

            predictor = ModelPredictor.load(model, settings)
            typer.echo(
                f"model: {predictor.name}"
                + (f" v{predictor.version}" if predictor.version else "")
                + f" ({predictor.task})",
                err=True,
            )
            summary = score_file(predictor, input, output, rejects, chunk_rows, inputs, show)
    except KeyboardInterrupt:
        _fail("interrupted: nothing was written (the partial output was removed)", 130)
    except PredictionInputError as e:
        _fail(f"{input}: {e}", 1)
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(str(summary))
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if summary.rejected:
        raise typer.Exit(3)


@app.command()
def run(config: ConfigOption, mode: ModeOption = None, set: SetOption = None, quiet: QuietOption = False):
    "Run the experiment notebook with papermill as one MLflow run; the executed notebook goes to runs/<run id>/."
    try:
        settings = _setup(mode, quiet)
        from ml_project.config import load_config
        from ml_project.train.notebooks import run_notebooks
        from ml_project.train.preflight import check_configs

        experiment = load_config(config, set)
        check_configs([experiment], settings)
        outcome = run_notebooks(config, experiment, settings, list(set or []), progress=not quiet)
    except KeyboardInterrupt:
        _fail(INTERRUPTED, 130)
    except _project_errors() as e:
        _fail(str(e), 1)
    typer.echo(outcome.message)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
def tune(
    config: ConfigOption,
    trials: Annotated[
        int | None,
        typer.Option("--trials", "-n", help="Trials to add (default: the config's; none when only --timeout is given)"),
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", "-t", help="Seconds for the search")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes sharing the study")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Study storage: an SQLAlchemy URL (e.g. postgresql+psycopg://...) or journal:<file>; default: the optuna_storage setting, else SQLite under runs/"
        ),
    ] = None,
    refit: Annotated[
        bool, typer.Option(help="Refit the best parameters, register them as challenger, promote if better")
    ] = True,
    mode: ModeOption = None,
    set: SetOption = None,
):
    "Tune a config's model with Optuna: a resumable study, K workers, nested MLflow runs, plots, refit and promotion."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.search.tune import tune as run_tuning
        from ml_project.train.preflight import check_configs

        experiment = load_config(config, set)
        check_configs([experiment], settings, search=True)
        result = run_tuning(
            experiment,
            settings,
            n_trials=trials,
            timeout=timeout,
            storage=storage,
            workers=workers,
            refit=refit,
            progress=True,
        )
    except KeyboardInterrupt:
        _fail(
            "interrupted: finished trials are kept, the running ones marked failed; run the same command to resume", 130
        )
    except _project_errors() as e:
        _fail(str(e), 1)
    from ml_project.search.tune import tune_summary

    typer.echo("\n".join(tune_summary(result, experiment, settings)))


@app.command()
def data(
    config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment config(s) whose data to prepare")],
    mode: ModeOption = None,
):
    "Acquire (once), verify, validate, split and write the processed data of each config."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.split import load_splits

        for path in config:
            splits = load_splits(load_config(path), settings)
            rows = ", ".join(f"{k} {v:,}" for k, v in splits.rows.items())
            dataset = splits.dataset
            typer.echo(
                f"{path}: {settings.relative(dataset.raw_path)} md5 {dataset.md5} valid; {rows} -> {settings.relative(splits.manifest)}"
            )
    except _project_errors() as e:
        _fail(str(e), 1)


EncodingOption = Annotated[
    str | None, typer.Option(help="The file's text encoding (default: UTF-8, else latin-1, with a note)")
]
SepOption = Annotated[str | None, typer.Option(help="The column separator (default: sniffed from the file)")]


def _write_new(path: Path, text: str):
    "Write `text` to `path`, refusing to replace a file that is there."
    if path.exists():
        _fail(f"{path} exists; not overwritten", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    typer.echo(f"wrote {path}")


@app.command("infer-schema")
def infer_schema_command(
    csv: Annotated[Path, typer.Argument(help="A CSV file to draft a schema from")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of printing")] = None,
    max_levels: Annotated[int, typer.Option(help="Text columns with at most this many values become categories")] = 50,
    encoding: EncodingOption = None,
    sep: SepOption = None,
):
    "Draft a column schema (YAML) for a new data set; review it, then name it as data.schema in your config."
    from ml_project.schema import draft_schema_yaml, read_draft

    try:
        frame, options, notes = read_draft(csv, {k: v for k, v in {"encoding": encoding, "sep": sep}.items() if v})
    except _project_errors() as e:
        _fail(str(e), 1)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    text = draft_schema_yaml(frame, csv.name, options, max_levels)
    if out:
        _write_new(out, text)
    else:
        typer.echo(text)


@app.command("init-config")
def init_config(
    csv: Annotated[Path, typer.Argument(help="Your data: a CSV file (inside the project, e.g. data/external/my.csv)")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict")],
    name: Annotated[str | None, typer.Option(help="The experiment's name (default: from the file name)")] = None,
    encoding: EncodingOption = None,
    sep: SepOption = None,
):
    "Write a minimal, checked config (configs/<name>.yaml) and a schema (configs/schemas/<name>.yaml) for a new CSV; then train it."
    try:
        settings = _setup(None)
        from ml_project.config import load_config
        from ml_project.schema import draft_config_yaml, draft_schema_yaml, read_draft
        from ml_project.train.preflight import check_config

        frame, options, notes = read_draft(csv, {k: v for k, v in {"encoding": encoding, "sep": sep}.items() if v})
        name = name or csv.stem.replace(" ", "_")
        config_file, schema_file = (
            settings.configs_dir / f"{name}.yaml",
            settings.configs_dir / "schemas" / f"{name}.yaml",
        )
        config_text = draft_config_yaml(frame, csv, target, name, settings.relative(schema_file), options, settings)
    except _project_errors() as e:
        _fail(str(e), 1)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    _write_new(schema_file, draft_schema_yaml(frame, csv.name, options))
    _write_new(config_file, config_text)
    problems = check_config(load_config(config_file), settings)
    for problem in problems:
        typer.echo(f"check: {problem}", err=True)
    typer.echo(f"next: review both files, then: ml-project train -c {settings.relative(config_file)}")
