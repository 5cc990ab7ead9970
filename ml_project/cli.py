"""The `ml-project` command: run the lifecycle's stages from a shell.

Hand-written (not exported from a notebook): it only wires the stages' functions to a command line.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and manage ml-project experiments. Settings come from settings.ini and ML_PROJECT_* variables.")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Experiment config (YAML), e.g. configs/experiment_001.yaml")]
ModeOption = Annotated[Optional[str], typer.Option("--mode", "-m", help="careful (full data and folds) or fast (a small sample); default from settings")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config value: dotted.key=value (repeatable)")]


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _known_errors():
    from ml_project.config import ConfigError
    from ml_project.data import DataValidationError, RawDataError
    from ml_project.training import ModelIntegrityError
    return (ConfigError, RawDataError, DataValidationError, ModelIntegrityError, KeyError, ValueError)


def _setup(mode: str | None):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("ml_project").setLevel(logging.INFO)
    for noisy in ("papermill", "alembic", "mlflow"): logging.getLogger(noisy).setLevel(logging.WARNING)
    from ml_project.config import get_settings
    return get_settings(**({"mode": mode} if mode else {}))


@app.command()
def train(config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment config(s) (YAML), e.g. configs/experiment_001.yaml")],
          mode: ModeOption = None, set: SetOption = None):
    "Train experiments: data, validation, features, cross-validation, test evaluation, MLflow run and registry, models/."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.training import format_summary, run_experiment, summary_table
        experiments = [load_config(path, set) for path in config]  # every config is checked before anything runs
        results = []
        for experiment in experiments:
            results.append(run_experiment(experiment, settings))
            typer.echo(format_summary(results[-1], settings) + "\n")
    except _known_errors() as e:
        _fail(str(e).strip("'\""), 1)
    if len(results) > 1:
        typer.echo("Summary (primary metric of each experiment):")
        typer.echo(summary_table(results).round(4).to_string())


@app.command()
def evaluate(model: Annotated[Path, typer.Option("--model", help="A trained model's folder, e.g. models/experiment_001")],
             out: Annotated[Optional[Path], typer.Option(help="Where to write the plots and report (default: <model>/evaluation)")] = None):
    "Print a saved model's metrics on its test split and write the plots and a report."
    try:
        settings = _setup(None)
        from ml_project.config import ExperimentConfig, get_settings
        from ml_project.evaluation import evaluate_and_report
        from ml_project.features import features_and_target
        from ml_project.training import load_model, prepare_data
        pipeline, metadata = load_model(model, settings)  # checks the recorded sha256 before unpickling
        config = ExperimentConfig.model_validate(metadata["config"])
        settings = get_settings(mode=metadata["mode"], seed=metadata["seed"])
        _, splits, _ = prepare_data(config, settings)
        (X_valid, y_valid), (X_test, y_test) = (features_and_target(splits[k], config) for k in ("valid", "test"))
        evaluation, _, files = evaluate_and_report(pipeline, X_test, y_test, X_valid, y_valid, config, settings,
                                                   out or Path(model) / "evaluation")
    except _known_errors() as e:
        _fail(str(e).strip("'\""), 1)
    import pandas as pd
    typer.echo(f"{config.experiment.name}: {len(X_test):,} test rows ({metadata['mode']} mode, data md5 {metadata['data_md5']})")
    typer.echo(pd.Series(evaluation.metrics).round(4).to_frame("test").to_string())
    if config.data.task == "classification":
        typer.echo(f"\nconfusion matrix at threshold {evaluation.threshold if evaluation.threshold is not None else 'argmax'}:")
        typer.echo(evaluation.confusion.to_string())
    typer.echo(f"\nwrote {len(files)} files to {files[0].parent}: " + ", ".join(f.name for f in files))


@app.command()
def run(config: ConfigOption, mode: ModeOption = None, set: SetOption = None):
    "Run the training and evaluation notebooks with papermill as one MLflow run; executed notebooks go to runs/<run id>/."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.experiments import run_notebooks
        experiment = load_config(config, set)
        outcome = run_notebooks(config, experiment, settings, list(set or []))
    except _known_errors() as e:
        _fail(str(e).strip("'\""), 1)
    typer.echo(outcome.message)
    if not outcome.ok: raise typer.Exit(1)


@app.command()
def tune(config: ConfigOption, trials: Annotated[Optional[int], typer.Option("--trials", "-n", help="Trials to add (default: the config's; none when only --timeout is given)")] = None,
         timeout: Annotated[Optional[float], typer.Option("--timeout", "-t", help="Seconds for the search")] = None,
         workers: Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes sharing the study")] = 1,
         storage: Annotated[Optional[str], typer.Option(help="Study storage: an SQLAlchemy URL (e.g. postgresql://...) or journal:<file>; default sqlite under runs/")] = None,
         refit: Annotated[bool, typer.Option(help="Refit the best parameters, register them as challenger, promote if better")] = True,
         mode: ModeOption = None, set: SetOption = None):
    "Tune a config's model with Optuna: a resumable study, K workers, nested MLflow runs, plots, refit and promotion."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.tuning import decode_params, tune as run_tuning, tuning_metric
        experiment = load_config(config, set)
        result = run_tuning(experiment, settings, n_trials=trials, timeout=timeout, storage=storage, workers=workers,
                            refit=refit, progress=True)
    except KeyboardInterrupt:
        _fail("interrupted: finished trials are kept, the running ones marked failed; run the same command to resume", 130)
    except _known_errors() as e:
        _fail(str(e).strip("'\""), 1)
    study, metric = result.study, tuning_metric(experiment)
    added = ", ".join(f"{n} {state}" for state, n in result.added.items() if n)
    typer.echo(f"study {study.study_name}: {len(result.trials)} trials in all; this run added {sum(result.added.values())} "
               f"({added or 'none'}) in {result.seconds:.1f}s")
    if result.orphans_failed: typer.echo(f"trials {result.orphans_failed} had lost their worker: marked failed")
    try: typer.echo(f"best CV {metric} {study.best_value:.4f} (trial {study.best_trial.number}): "
                    f"{decode_params(study.best_params, experiment.tuning.search_space)}")
    except ValueError: typer.echo("no trial finished yet")
    if result.refit:
        r = result.refit
        typer.echo(f"refit: test {experiment.primary_metric} {r.test[experiment.primary_metric]:.4f}; registered {r.registered[0]} "
                   f"v{r.registered[1]} as challenger" + ("; it is the new champion" if r.champion else "; the champion stays"))
    typer.echo(f"MLflow parent run {result.parent_run_id}; plots: {', '.join(str(p.relative_to(settings.root)) for p in result.plots)}")


@app.command()
def data(config: Annotated[list[Path], typer.Option("--config", "-c", help="Experiment config(s) whose data to prepare")],
         mode: ModeOption = None):
    "Acquire (once), verify, validate, split and write the processed data of each config."
    try:
        settings = _setup(mode)
        from ml_project.config import load_config
        from ml_project.training import prepare_data
        for path in config:
            experiment = load_config(path)
            dataset, splits, manifest = prepare_data(experiment, settings)
            rows = ", ".join(f"{k} {len(v):,}" for k, v in splits.items())
            typer.echo(f"{path}: {dataset.raw_path.relative_to(settings.root)} md5 {dataset.md5} valid; {rows} -> {manifest.relative_to(settings.root)}")
    except _known_errors() as e:
        _fail(str(e).strip("'\""), 1)


@app.command("infer-schema")
def infer_schema_command(csv: Annotated[Path, typer.Argument(help="A CSV file to draft a schema from")],
                         out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of printing")] = None,
                         max_levels: Annotated[int, typer.Option(help="Text columns with at most this many values become categories")] = 50):
    "Draft a column schema (YAML) for a new data set; review it, then name it as data.schema in your config."
    import pandas as pd
    import yaml
    from ml_project.data import infer_schema
    if not csv.is_file(): _fail(f"CSV file not found: {csv}")
    schema = infer_schema(pd.read_csv(csv), max_levels=max_levels)
    text = (f"# Drafted from {csv.name} by `ml-project infer-schema`: review the ranges and levels before relying on it.\n"
            + yaml.safe_dump(schema.model_dump(exclude_defaults=True), sort_keys=False, width=120))
    if out:
        if out.exists(): _fail(f"{out} exists; not overwritten")
        out.write_text(text)
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


def main():  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
