"""A notebook-first tabular ML project: data to deployed model, every stage tested and documented.

Modules:

- `ml_project.config`: Runtime settings from `settings.ini` and the environment; experiment configs in YAML, validated before anything runs.
- `ml_project.data`: Acquire raw data once, version it with DVC, verify its hash on every run, validate it against a declared schema, and load it correctly typed.
- `ml_project.eda`: A first look at a problem's data: its shape, what is missing, how each column is distributed, how columns relate, and how each one relates to the target.
- `ml_project.ensemble`: A cross-family search's best trials blended: greedy ensemble selection on their out-of-fold predictions, refitted as one voting model.
- `ml_project.evaluation`: The full metric set, a decision threshold chosen on validation data, the plots that show how a model errs, error analysis by segment, and a saved model evaluated again on exactly its own test split.
- `ml_project.experiment`: One experiment end to end, as `ml-project train` runs it: data, cross-validation, the final fit, evaluation on validation and test, the saved model, an MLflow run, a registered version and the champion decision; or the same as an executed notebook with papermill.
- `ml_project.fast_path`: The predictor's fast path: a fitted pipeline compiled into plain NumPy steps for a few rows at a time.
- `ml_project.features`: Domain features, statistics learned on the training fold only, hooks for date and text columns, and a seeded, stratified train/valid/test split written to `data/processed/` with a manifest.
- `ml_project.mlflow_model`: The MLflow flavour of our models: a `pyfunc` model from code that answers through `ModelPredictor`.
- `ml_project.models`: A model factory driven by the config: each model is one scikit-learn `Pipeline` from raw rows (features → preprocessing → estimator) to predictions.
- `ml_project.monitoring`: Is the model still seeing the data it was trained on, and still right? Drift of each input and of the predictions against the training reference, with the tests and thresholds Evidently uses by default (scipy does the statistics), dataset drift as the share of drifted features, and the alerts a scheduler can act on.
- `ml_project.neural`: A PyTorch multilayer perceptron as a scikit-learn estimator: skorch runs the training loop; this adds flat, config-friendly hyperparameters, seeding, device choice and target scaling.
- `ml_project.predictor`: The model, used: `ModelPredictor` loads the champion (or any version or saved folder) with its hash checked, checks new rows against the training schema, and answers with the data's own labels and probabilities at the threshold chosen on validation; `score_file` scores files of any size in bounded memory.
- `ml_project.preprocessing`: Missing values, categorical encoding, scaling and outliers as one scikit-learn `ColumnTransformer`, built from the config, with pandas output and feature names.
- `ml_project.registry`: Where trained models live and how they are found again: model files with a verified hash, each run tracked in MLflow, versions registered under their problem, and a champion chosen on validation data, never on the test split.
- `ml_project.search`: One Optuna study over several model families: the family is each trial's first decision, drawn by a cost-aware rule, each family's parameters from its own config's search space.
- `ml_project.services`: Shared services for a team: a PostgreSQL server and an MLflow tracking server backed by it, under `.services/`.
- `ml_project.serving`: The model behind an HTTP endpoint: a FastAPI app that holds a `ModelPredictor` and follows the champion, checks requests against the training schema, asks for API keys, logs every prediction for audit and monitoring, and exposes Prometheus metrics; `ml-project serve` runs it under uvicorn.
- `ml_project.training`: Cross-validation on the training split and the final fit: a fresh, seeded pipeline per fold, so the score estimates what the fitted model will do on rows it has not seen.
- `ml_project.tuning`: Hyperparameter search with Optuna: the config's search space, the cross-validated score on the training split as the objective, fold-level pruning, and a persistent study that resumes."""

__version__ = "0.1.0"

__all__ = ["ModelPredictor"]


def __getattr__(name):
    "`from ml_project import ModelPredictor`, imported on first use: `import ml_project` stays light for the command line."
    if name == "ModelPredictor":
        from ml_project.predictor import ModelPredictor
        return ModelPredictor
    raise AttributeError(f"module 'ml_project' has no attribute {name!r}")
