"""A notebook-first tabular ML project: data to deployed model, every stage tested and documented.

Modules:

- `ml_project.fast_path`: The predictor's fast path: a fitted pipeline compiled into plain NumPy steps for a few rows at a time.
- `ml_project.mlflow_model`: The MLflow flavour of our models: a `pyfunc` model from code that answers through `ModelPredictor`."""

__version__ = "0.1.0"

__all__ = ["ModelPredictor"]


def __getattr__(name):
    "`from ml_project import ModelPredictor`, imported on first use: `import ml_project` stays light for the command line."
    if name == "ModelPredictor":
        from ml_project.predictor import ModelPredictor
        return ModelPredictor
    raise AttributeError(f"module 'ml_project' has no attribute {name!r}")
