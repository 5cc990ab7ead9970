"""Using the model: ModelPredictor from the registry or a folder, checked inputs, batch scoring, and the MLflow model as MLflow users expect it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import free_port
from typer.testing import CliRunner

from ml_project.cli import app
from ml_project.config import load_config
from ml_project.errors import ModelIntegrityError, PredictionInputError
from ml_project.split import load_splits

runner = CliRunner()
BIN = Path(sys.executable).parent


@pytest.fixture
def churn(trained_churn):
    "The churn XGBoost model trained (fast mode) and registered as the champion of churn__fast; its test inputs."
    X_test, _ = load_splits(load_config(trained_churn.configs_dir / "churn_xgboost.yaml"), trained_churn)["test"]
    return trained_churn, X_test


def test_the_readme_lines_load_the_champion_and_predict(churn):
    _settings, X_test = churn
    from ml_project import ModelPredictor

    predictor = ModelPredictor.from_registry("churn__fast")
    new_customers = X_test.head(2).to_dict(orient="records")  # two customers as plain dicts
    predictions = predictor.predict(new_customers)
    assert set(predictions.labels) <= {"Yes", "No"} and predictions.probabilities.shape == (2, 2)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1)
    assert (predictions.model, predictions.version) == ("churn__fast", "1")
    meta = predictor.metadata
    assert (
        predictions.threshold == meta["threshold"] and 0 < meta["threshold"] < 1
    )  # chosen on validation, not 0.5 by default
    expected = np.where(predictions.probabilities[:, 1] >= meta["threshold"], "Yes", "No")
    assert predictions.labels.tolist() == expected.tolist()
    assert meta["data_md5"] == "694734346df56bad2a902c81b51c6fb4" and meta["classes"] == ["No", "Yes"]
    assert {"git_commit", "trained_at", "input_schema", "metrics"} <= set(meta) and "valid_roc_auc" in meta["metrics"]
    frame = predictions.to_frame()
    assert list(frame.columns) == ["prediction", "probability"] and frame.index.tolist() == [0, 1]


def test_a_folder_loads_from_any_working_directory(churn, tmp_path, monkeypatch):
    from ml_project import ModelPredictor

    _settings, X_test = churn
    monkeypatch.chdir(tmp_path)
    by_path = ModelPredictor.from_path("models/churn_xgboost__fast")
    by_name = ModelPredictor.load("churn__fast:1")
    np.testing.assert_array_equal(
        by_path.predict(X_test.head(5)).probabilities, by_name.predict(X_test.head(5)).probabilities
    )
    assert by_path.version is None and by_name.version == "1"
    with pytest.raises(ModelIntegrityError, match="models load only from"):
        ModelPredictor.from_path(tmp_path)


def test_a_registry_version_is_verified_before_it_is_loaded(churn):
    from ml_project import ModelPredictor

    settings, _ = churn
    ModelPredictor.from_registry("churn__fast")
    cached = settings.models_dir / "registry" / "churn__fast" / "v1" / "model.joblib"
    cached.write_bytes(cached.read_bytes() + b"\0")  # a damaged local copy is fetched again
    ModelPredictor.from_registry("churn__fast")
    assert cached.read_bytes()[-1:] != b"\0"
    stored = next(settings.mlflow_artifact_root.rglob("artifacts/model.joblib"))
    stored.write_bytes(stored.read_bytes() + b"\0")  # the registry's own copy changed: refused
    shutil.rmtree(cached.parent)
    with pytest.raises(ModelIntegrityError, match="the registry recorded"):
        ModelPredictor.from_registry("churn__fast")


def test_bad_rows_are_named_field_by_field(churn):
    from ml_project import ModelPredictor

    _settings, X_test = churn
    predictor = ModelPredictor.from_registry("churn__fast")
    good = X_test.head(1).to_dict(orient="records")[0]
    wrong = {**good, "tenure": "long", "monthly_charges": [1, 2]}
    with pytest.raises(PredictionInputError) as error:
        predictor.predict([good, wrong])
    assert {(p["row"], p["field"]) for p in error.value.problems} == {(1, "tenure"), (1, "monthly_charges")}
    assert "row 1: 'tenure' expected a finite number, got 'long'" in str(error.value)
    without = {k: v for k, v in good.items() if k != "contract"}
    with pytest.raises(PredictionInputError, match="'contract' is a required column and is missing"):
        predictor.predict(without)
    with pytest.raises(PredictionInputError, match="row 1: 'contract' is missing from this row"):
        predictor.predict([good, without])
    nothing = predictor.predict({c: None for c in predictor.schema})  # missing values are imputed, never a crash
    assert len(nothing) == 1 and nothing.labels[0] in ("Yes", "No")
    odd = predictor.predict({**good, "contract": "Ten year", "tenure": 999})
    assert any("Ten year" in w for w in odd.warnings) and any("tenure" in w and "range" in w for w in odd.warnings)
    with pytest.raises(TypeError, match="rows must be a DataFrame, a dict or a list of dicts"):
        predictor.predict("tenure=3")


def _serving_frame(X: pd.DataFrame) -> pd.DataFrame:
    "Rows as a client builds them: integer, float and string columns (no pandas categoricals)."
    return X.astype({c: object for c in X.select_dtypes("category").columns}).astype(
        {c: "int64" for c in X.columns if pd.api.types.is_integer_dtype(X[c])}
    )


def test_the_mlflow_model_answers_as_mlflow_users_expect(churn):
    from ml_project import ModelPredictor

    settings, X_test = churn
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    frame = _serving_frame(X_test.head(4))
    assert {str(t) for t in frame.dtypes} >= {"int64", "float64", "object"}
    answer = mlflow.pyfunc.load_model("models:/churn__fast@champion").predict(frame)
    assert list(answer.columns) == ["prediction", "probability"] and set(answer["prediction"]) <= {"Yes", "No"}
    np.testing.assert_allclose(
        answer["probability"], ModelPredictor.from_registry("churn__fast").predict(X_test.head(4)).probabilities[:, 1]
    )


def test_mlflow_models_serve_answers_on_localhost(churn, tmp_path):
    settings, X_test = churn
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/churn__fast@champion",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except (URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow models serve did not start:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
        records = json.loads(_serving_frame(X_test.head(2)).to_json(orient="records"))
        request = Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": records}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())["predictions"]
        assert (
            len(answer) == 2
            and {a["prediction"] for a in answer} <= {"Yes", "No"}
            and 0 <= answer[0]["probability"] <= 1
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


def _with_bad_rows(X_test: pd.DataFrame, path: Path, n: int = 50) -> Path:
    rows = X_test.head(n).astype(object).reset_index(drop=True)
    rows.insert(0, "rownames", range(1001, 1001 + n))
    rows.loc[3, "tenure"] = "ten"
    rows.loc[10, "monthly_charges"] = "12,50"  # a decimal comma
    rows.loc[10, "payment_method"] = "Bitcoin"  # unseen: scored, with a warning
    rows.loc[20, "contract"] = None  # missing: imputed
    rows.to_csv(path, index=False)
    return path


def test_predict_command_scores_good_rows_and_rejects_bad_ones(churn, tmp_path):
    _settings, X_test = churn
    source = _with_bad_rows(X_test, tmp_path / "new.csv")
    out = tmp_path / "out" / "scored.parquet"
    result = runner.invoke(
        app, ["predict", "--model", "churn__fast", "--input", str(source), "--output", str(out), "--chunk-rows", "7"]
    )
    assert result.exit_code == 3, result.output  # some rows rejected: the others are written
    assert "scored 48 of 50 rows" in result.output and "2 rejected" in result.output
    assert "payment_method: categories never seen in training ['Bitcoin']" in result.output
    scored = pd.read_parquet(out)
    assert len(scored) == 48 and scored["rownames"].astype(int).tolist() == [
        r for r in range(1001, 1051) if r not in (1004, 1011)
    ]
    assert {"prediction", "probability", "tenure", "contract"} <= set(scored.columns)
    rejects = pd.read_csv(out.with_name("scored.rejects.csv"))
    assert rejects[["row", "field"]].values.tolist() == [
        [4, "tenure"],
        [11, "monthly_charges"],
    ]  # data rows of the file, 1-based
    assert (
        rejects.loc[0, "error"] == "expected a finite number, got 'ten'" and rejects.loc[0, "tenure"] == "ten"
    )  # the row as the file has it
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "scored.parquet",
        "scored.rejects.csv",
    ]  # no temporary files left
    # the same rows scored in one chunk, and from Parquet, give the same answers
    pd.read_csv(source).to_parquet(tmp_path / "new.parquet")
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            "churn__fast",
            "--input",
            str(tmp_path / "new.parquet"),
            "--output",
            str(tmp_path / "again.parquet"),
        ],
    )
    assert result.exit_code == 3, result.output
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "again.parquet")["probability"], scored["probability"])


def test_predict_command_writes_nothing_when_it_cannot_score(churn, tmp_path):
    _settings, X_test = churn
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    X_test.drop(columns=["contract"]).head(5).to_csv(tmp_path / "no_contract.csv", index=False)
    out = tmp_path / "scored.parquet"
    result = runner.invoke(
        app, ["predict", "--model", "churn__fast", "--input", str(tmp_path / "no_contract.csv"), "--output", str(out)]
    )
    assert result.exit_code == 1 and "'contract' is a required column and is missing" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_contract.csv"]  # no output, no temporary file
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            "churn__fast",
            "--input",
            str(tmp_path / "no_contract.csv"),
            "--output",
            str(tmp_path / "x.csv"),
        ],
    )
    assert result.exit_code == 1 and "must end in .parquet" in result.output
    result = runner.invoke(
        app, ["predict", "--model", "churn__fast", "--input", str(tmp_path / "missing.csv"), "--output", str(out)]
    )
    assert result.exit_code == 1 and "input file not found" in result.output


def test_a_regression_model_predicts_on_the_original_scale(project):
    from ml_project import ModelPredictor

    config = load_config(project.configs_dir / "ames_random_forest.yaml")
    assert runner.invoke(app, ["train", "-c", str(project.configs_dir / "ames_random_forest.yaml")]).exit_code == 0
    X_test, y_test = load_splits(config, project)["test"]
    predictor = ModelPredictor.from_registry("ames__fast")
    predictions = predictor.predict(X_test)
    assert predictions.labels is None and predictions.threshold is None
    assert 0.5 < np.median(predictions.values) / np.median(y_test) < 2  # dollars, not log dollars
    assert list(predictions.to_frame().columns) == ["prediction"]
    np.testing.assert_allclose(predictions.values, predictor.pipeline.predict(X_test))


def test_the_readme_example_runs_as_written(churn):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("## Use the model")[1].split("```python\n")[1].split("```")[0]
    scope = {}
    exec(code.replace('from_registry("churn")', 'from_registry("churn__fast")'), scope)
    frame = scope["predictions"].to_frame()
    assert frame["prediction"].isin(["Yes", "No"]).all() and len(frame) == 2
    assert (
        frame.loc[0, "probability"] > frame.loc[1, "probability"]
    )  # a first-month customer is likelier to leave than a loyal one
