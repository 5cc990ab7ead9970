"""A notebook-first tabular ML project: data to deployed model, every stage tested and documented.

Modules:

- `ml_project.experiments`: Notebooks as experiments: papermill runs the training and evaluation notebooks as one MLflow run."""

__version__ = "0.1.0"
