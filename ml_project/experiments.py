"""Notebooks as experiments: papermill runs the training and evaluation notebooks as one MLflow run.

Hand-written (not exported from a notebook): it only drives papermill and MLflow around the notebooks.
The executed notebooks are the record: they go to `runs/<run id>/` and to the run's artefacts, also
when a cell fails, in which case the run is marked FAILED and the failing cell is named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml_project.config import ExperimentConfig, Settings

EXPERIMENT_NOTEBOOKS = ("06_training.ipynb", "07_evaluation.ipynb")


@dataclass
class NotebookRun:
    "The outcome of `run_notebooks`."
    ok: bool
    run_id: str
    folder: Path
    message: str


def _failure(error, notebook: Path) -> str:
    "Name the failing cell: its execution count, first line, and the error."
    first_line = next((l for l in (error.source or "").splitlines() if l.strip() and not l.startswith("#|")), "")
    return (f"{notebook.name}: cell [{error.exec_count}] `{first_line.strip()[:80]}` raised {error.ename}: "
            f"{str(error.evalue).strip()[:500]}")


def run_notebooks(config_file: Path | str, config: ExperimentConfig, settings: Settings, overrides: list[str] = (),
                  notebooks: tuple[str, ...] = EXPERIMENT_NOTEBOOKS) -> NotebookRun:
    "Execute `notebooks` with papermill, passing the config, mode, overrides and one MLflow run id to each."
    import papermill as pm
    from mlflow.tracking import MlflowClient

    from ml_project.training import problem_name, use_mlflow

    mlflow = use_mlflow(settings, problem_name(config))
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(problem_name(config))
    run = client.create_run(experiment.experiment_id, run_name=config.experiment.name,
                            tags={"runner": "papermill", "notebooks": ", ".join(notebooks)})
    run_id = run.info.run_id
    folder = settings.runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    source = settings.root / "nbs"
    parameters = {"config_file": str(Path(config_file).resolve()), "mode": settings.mode,
                  "overrides": list(overrides), "run_id": run_id}
    for name in notebooks:
        executed = folder / name
        try:
            pm.execute_notebook(source / name, executed, parameters=parameters, cwd=str(source),
                                kernel_name="python3", progress_bar=False, log_output=False)
        except pm.PapermillExecutionError as error:
            message = _failure(error, executed)
            if executed.is_file(): client.log_artifact(run_id, str(executed), "notebooks")
            client.set_tag(run_id, "error", message[:5000])
            client.set_terminated(run_id, "FAILED")
            return NotebookRun(False, run_id, folder, f"error: {message}\nexecuted notebook kept: {executed}\n"
                                                       f"MLflow run {run_id} marked FAILED")
        client.log_artifact(run_id, str(executed), "notebooks")
    client.set_terminated(run_id, "FINISHED")
    metrics = client.get_run(run_id).data.metrics
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in (f"cv_{config.primary_metric}_mean", f"test_{config.primary_metric}") if k in metrics)
    return NotebookRun(True, run_id, folder, f"{config.experiment.name}: {shown}\nexecuted notebooks: {folder}\n"
                                             f"MLflow run {run_id} in experiment '{problem_name(config)}'")
