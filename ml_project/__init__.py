"""A notebook-first tabular ML project: data to deployed model, every stage tested and documented.

Modules:

- `ml_project.cli.common`: The `ml-project` command's shared parts: the app, its options, its errors, its logging and settings.
- `ml_project.cluster.engine`: A Dask cluster for the project: started here as processes, or any existing one reached by its scheduler's address.
- `ml_project.cluster.scoring`: `score_on_cluster`: a file or dataset larger than one machine scored by a Dask cluster's workers, each holding the model once, hash-checked; the scored rows and the rejects written as Parquet and CSV datasets, one file per partition, renamed into place only when every partition is done.
- `ml_project.cluster.training`: `train_on_cluster`: an XGBoost experiment trained on a Dask cluster's workers, for a table larger than one machine's memory: partitions validated where they lie, rows split by a seeded hash, the steps fitted on a bounded sample, `xgboost.dask` early-stopped on the validation rows, every metric from every row; the result an ordinary pipeline that the predictor, the service, monitoring and the registry take as they take any other.
- `ml_project.config`: Experiment configs in YAML, validated before anything runs; a search config's families, each as a config of its own.
- `ml_project.data`: Acquire raw data once, version it with DVC, verify its hash on every run, and load it validated against its schema and correctly typed.
- `ml_project.deploy.image`: The prediction service as a container image: its build context, its base, the build, and the warm-up inside it.
- `ml_project.deploy.release`: The release: the registry's champion through its gates, then onto the running stack blue/green; and back.
- `ml_project.deploy.stack`: The production stack on one machine: API replicas behind HAProxy, Prometheus on every replica (deploy/compose.yaml).
- `ml_project.eda`: A first look at a problem's data: its shape, what is missing, how each column is distributed, how columns relate, and how each one relates to the target.
- `ml_project.errors`: The project's own errors: each is a mistake a user can fix, and its message says what is wrong and where.
- `ml_project.features`: Domain features, hooks for date and text columns, and statistics learned on the training fold only.
- `ml_project.models.factory`: A model factory driven by the config: each model is one scikit-learn `Pipeline` from raw rows (features → preprocessing → estimator) to predictions.
- `ml_project.models.neural`: A PyTorch multilayer perceptron as a scikit-learn estimator: skorch runs the training loop; this adds flat, config-friendly hyperparameters, seeding, device choice and target scaling.
- `ml_project.monitor.check`: `ml-project monitor` as one call: the report over time, as HTML and JSON, recorded in MLflow.
- `ml_project.monitor.drift`: Drift of each input and of the predictions against the training reference (Evidently's tests and thresholds, computed with scipy), data quality, performance with late labels, and the service's health.
- `ml_project.monitor.report`: A model's rows against its training reference: drift, quality, performance once labels arrive and the service's health, with the alerts.
- `ml_project.monitor.retrain`: When the alerts say so, the model's experiment trained again on its data with the newest rows.
- `ml_project.preprocessing`: Missing values, categorical encoding, scaling and outliers as one scikit-learn `ColumnTransformer`, built from the config, with pandas output and feature names.
- `ml_project.schema`: What a raw table must hold, declared in YAML and checked with pandera; files pandas would misread; and a first schema and config drafted from a new CSV.
- `ml_project.search.blend`: A cross-family search's best trials blended: greedy ensemble selection on their out-of-fold predictions, refitted as one voting model.
- `ml_project.search.families`: One Optuna study over several model families: the family is each trial's first decision, drawn by a cost-aware rule, each family's parameters from its own config's search space.
- `ml_project.search.services`: Shared services for a team: a PostgreSQL server and an MLflow tracking server backed by it, under `.services/`.
- `ml_project.search.space`: One config's Optuna search: its space, the cross-validated objective on the training split, pruning within folds, and the rounds a refit trains.
- `ml_project.search.study`: The Optuna study behind a search: seeded sampler and pruner, its storage, trials recorded in MLflow, and workers in parallel processes.
- `ml_project.search.tune`: `tune`: a resumable study run by K workers with nested MLflow runs, its plots, and the best trial (or the families' blend) refit and judged.
- `ml_project.sections`: One pydantic model per section of an experiment config, each checking its own keys, and the metric names a config may use.
- `ml_project.serve.app`: The model behind an HTTP endpoint: the FastAPI app with its middleware and endpoints, and `ml-project serve` running it under uvicorn.
- `ml_project.serve.batch`: `score_file`: a CSV or Parquet file of any size scored in chunks with bounded memory, bad rows written to a rejects file with the reason.
- `ml_project.serve.fast_path`: The predictor's fast path: a fitted pipeline compiled into plain NumPy steps for a few rows at a time.
- `ml_project.serve.keys`: Who may call the service: keys stored as their SHA-256 digests, each with its roles.
- `ml_project.serve.log`: Every prediction appended to a log for audit and monitoring, and the service's Prometheus metrics.
- `ml_project.serve.mlflow_model`: The MLflow flavour of our models: a `pyfunc` model from code that answers through `ModelPredictor`.
- `ml_project.serve.predictor`: The model, used: `ModelPredictor` loads the champion (or any version or folder) with its hash checked and answers with the data's own labels and probabilities, at the threshold chosen on validation.
- `ml_project.serve.protocol`: uvicorn's httptools protocol with the limits on a request's head that uvicorn lacks.
- `ml_project.serve.rows`: New rows checked against the training schema before a model sees them: each value coerced or refused with its row and field.
- `ml_project.serve.service`: Requests checked against the training schema, and the service behind the endpoints: the model it holds, the champion it follows, who may call it.
- `ml_project.settings`: Runtime settings from `settings.ini` and the environment: where things live, how runs are tracked, how hard they try.
- `ml_project.split`: The target encoded once, a seeded and stratified train/valid/test split written to `data/processed/` with a manifest, and the hand-over to training.
- `ml_project.train.champion`: The champion of a problem chosen on validation data, never on the test split: the promotion rule, and runs compared.
- `ml_project.train.evaluation`: The full metric set, a decision threshold chosen on validation data, and error analysis: the worst predictions and the metrics by segment.
- `ml_project.train.experiment`: One experiment end to end, as `ml-project train` runs it: data, cross-validation, the final fit, evaluation, the saved model, an MLflow run, a registered version and the champion decision.
- `ml_project.train.files`: A trained pipeline saved with its metadata and SHA-256, its monitoring reference beside it, and loaded only after its hash is checked.
- `ml_project.train.notebooks`: One experiment run as an executed notebook with papermill (`ml-project run`): one MLflow run, the notebook kept with it.
- `ml_project.train.preflight`: Every problem of a config found before any work starts: data, features, metrics, the model's parameters and its search space.
- `ml_project.train.registry`: Versions registered under their problem's name with a signature, and any model found again by the name people use for it.
- `ml_project.train.report`: The plots that show how a model errs, the Markdown report, and a saved model evaluated again on exactly its own test split.
- `ml_project.train.tracking`: Each run recorded in MLflow: one tracked run with a heartbeat, closed as FAILED or KILLED when it ends badly, orphans closed by the next command.
- `ml_project.train.training`: Cross-validation on the training split and the final fit: a fresh, seeded pipeline per fold, so the score estimates what the fitted model will do on rows it has not seen."""

__version__ = "0.1.0"

__all__ = ["ModelPredictor"]


def __getattr__(name):
    "`from ml_project import ModelPredictor`, imported on first use: `import ml_project` stays light for the command line."
    if name == "ModelPredictor":
        from ml_project.serve.predictor import ModelPredictor

        return ModelPredictor
    raise AttributeError(f"module 'ml_project' has no attribute {name!r}")
