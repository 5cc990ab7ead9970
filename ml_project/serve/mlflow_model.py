"""The MLflow flavour of our models: a `pyfunc` model from code that answers through `ModelPredictor`.

Hand-written (not exported from a notebook). MLflow runs this file when it loads a model that
`ml_project.registry.register_model` logged ("models from code": no pickled wrapper), so
`mlflow.pyfunc.load_model("models:/churn@champion").predict(df)` and `mlflow models serve` return
the data's own labels and probabilities, at the threshold chosen on validation. The logged model
carries the pipeline (`artifacts/model.joblib`), its metadata and this package (`code/ml_project`).
"""

import json
from pathlib import Path

import joblib
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from ml_project.data import file_digest
from ml_project.errors import ModelIntegrityError
from ml_project.serve.predictor import ModelPredictor


class PredictorModel(PythonModel):
    "MLflow's view of a saved model: `predict(DataFrame)` gives `prediction` and `probability` (or `probability_<class>`) columns."

    def load_context(self, context):
        model, metadata = Path(context.artifacts["model"]), json.loads(Path(context.artifacts["metadata"]).read_text())
        actual = file_digest(model, "sha256")
        if actual != metadata["sha256"]:  # checked before unpickling, as everywhere else
            raise ModelIntegrityError(
                f"{model} does not match its recorded hash: recorded sha256 {metadata['sha256']}, file sha256 {actual}"
            )
        self.predictor = ModelPredictor(joblib.load(model), metadata, name=metadata.get("problem"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.predictor.predict(model_input).to_frame().reset_index(drop=True)


mlflow.models.set_model(PredictorModel())
