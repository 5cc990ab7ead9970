"""Your own data, bad input and hard stops: each case ends in a message naming the key, column or file, or in the right
behaviour, and leaves raw files, models/, the registry and MLflow runs as they should be."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import finish
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from ml_project.cli import app
from ml_project.config import load_config
from ml_project.split import load_splits
from ml_project.train.training import train_model

runner = CliRunner()
CLI = str(Path(sys.executable).parent / "ml-project")


def _runs(settings, experiment):
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment])
    except Exception:
        return pd.DataFrame()


def _config(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _own_csv(tmp_path, rows: int = 300, **write) -> Path:
    "A small table of one's own: an id, a number, a category and a yes/no target."
    i = np.arange(rows)
    frame = pd.DataFrame(
        {
            "customer_id": i,
            "spend": (i * 7 % 113).astype(float),
            "plan": np.where(i % 3, "basic", "pro"),
            "renewed": np.where((i * 7 % 113 > 50) ^ (i % 7 == 0), "yes", "no"),
        }
    )
    path = tmp_path / write.pop("name", "mine.csv")
    frame.to_csv(path, index=False, **write)
    return path


OWN = """
experiment: {{name: {name}, problem: {name}}}
data: {{source: {source}, target: renewed, positive_class: yes, id_column: customer_id{extra}}}
model: {{type: random_forest, params: {{n_estimators: 20}}}}
training: {{cv_folds: 3, metrics: [roc_auc, accuracy]}}
"""


def _own_config(tmp_path, source, name="mine", extra=""):
    return _config(tmp_path, name, OWN.format(name=name, source=source, extra=extra))


# --- 1. multiclass targets ---


def test_a_multiclass_config_trains_evaluates_tunes_registers_and_predicts(project, tmp_path):
    config = project.configs_dir / "hpc_xgboost.yaml"
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run = _runs(project, "hpc").iloc[0]
    for metric in ("roc_auc", "log_loss", "f1", "f1_weighted", "balanced_accuracy", "recall_VF", "precision_L"):
        assert np.isfinite(run[f"metrics.test_{metric}"]), metric
    assert run["metrics.test_roc_auc"] > 0.8  # four run-time classes, one-vs-rest
    report = project.models_dir / "hpc_xgboost__fast" / "evaluation"
    assert {"report.md", "confusion.png", "calibration.png", "importance.png"} <= {p.name for p in report.iterdir()}
    assert (
        "| VF |" in (report / "report.md").read_text().replace("|   VF |", "| VF |")
        or " VF " in (report / "report.md").read_text()
    )
    assert runner.invoke(app, ["evaluate", "--model", "hpc__fast"]).exit_code == 0
    tuned = runner.invoke(
        app, ["tune", "-c", str(config), "--trials", "2", "--storage", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert tuned.exit_code == 0, tuned.output
    assert (
        "best CV log_loss" in tuned.output
    )  # a multiclass study minimises log loss by default (the config's first metric)
    from ml_project import ModelPredictor

    X, _ = load_splits(load_config(config), project)["test"]
    out = ModelPredictor.from_registry("hpc__fast").predict(X.head(3)).to_frame()
    assert list(out.columns) == ["prediction", "probability_F", "probability_L", "probability_M", "probability_VF"]
    assert set(out["prediction"]) <= {"VF", "F", "M", "L"}


@pytest.mark.parametrize("family", ["random_forest", "logistic_regression", "mlp", "xgboost"])
def test_every_model_family_fits_more_than_two_classes(project, family):
    config = load_config(
        project.configs_dir / "hpc_xgboost.yaml",
        [f"model.type={family}", "model.params={}" if family != "mlp" else "model.params={max_epochs: 2}"],
    )
    splits = load_splits(config, project)
    proba = train_model(*splits["train"], config, project).predict_proba(splits.X["test"])
    assert proba.shape == (len(splits.X["test"]), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_positive_class_and_two_class_metrics_are_refused_for_more_classes(project):
    result = runner.invoke(
        app,
        [
            "train",
            "-c",
            str(project.configs_dir / "hpc_xgboost.yaml"),
            "--set",
            "data.positive_class=VF",
            "--set",
            "training.metrics=[pr_auc, accuracy]",
        ],
    )
    assert result.exit_code == 1
    assert "data.positive_class applies to two classes; 'class' has 4: remove it" in result.output
    assert "training.metrics ['pr_auc'] are for two classes" in result.output
    assert _runs(project, "hpc").empty  # nothing ran


# --- 2. a config checked whole before any work ---


def test_all_configs_are_checked_before_the_first_trains(project, tmp_path):
    broken = _config(
        tmp_path,
        "broken",
        (project.configs_dir / "churn_xgboost.yaml")
        .read_text()
        .replace("n_estimators: 1000", 'n_estimators: "many"')
        .replace("segment_by: [contract, internet_service]", "segment_by: [region]")
        .replace("learning_rate: {type: float", "learning_rates: {type: float"),
    )
    result = runner.invoke(app, ["train", "-c", str(project.configs_dir / "experiment_001.yaml"), "-c", str(broken)])
    assert result.exit_code == 1
    text = result.output
    assert "nothing was trained" in text and str(broken) in text
    assert "model.params.n_estimators: EarlyStoppingXGBClassifier refuses 'many'" in text
    assert "evaluation.segment_by names ['region'], which wa_churn.csv does not have" in text
    assert "tuning.search_space.learning_rates: not a parameter of EarlyStoppingXGBClassifier" in text
    assert len(text.splitlines()) < 20  # no traceback
    assert (
        _runs(project, "churn").empty and not (project.models_dir / "experiment_001__fast").exists()
    )  # the good one waited too


def test_columns_the_data_lacks_are_named(project, tmp_path):
    source = _own_csv(tmp_path)
    config = _config(
        tmp_path,
        "cols",
        OWN.format(name="cols", source=source, extra=", fill_missing: {age: 0}").replace(
            "id_column: customer_id", "id_column: cust_id"
        )
        + "features: {group_stats: [{group: region, value: spend}]}\nevaluation: {segment_by: [channel]}\n",
    )
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 1
    for key, column in (
        ("data.id_column", "cust_id"),
        ("data.fill_missing", "age"),
        ("features.group_stats", "region"),
        ("evaluation.segment_by", "channel"),
    ):
        assert f"{key} names ['{column}'], which mine.csv does not have" in result.output, key


def test_domain_features_on_other_data_say_what_they_need(project, tmp_path):
    config = _own_config(tmp_path, _own_csv(tmp_path), extra="")
    config.write_text(config.read_text() + "features: {domain: churn}\n")
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 1
    assert (
        "features.domain 'churn' needs the columns ['tenure', 'internet_service', 'total_charges', 'monthly_charges']"
        in result.output
    )
    assert "remove features.domain to train on other data" in result.output


def test_yes_and_no_labels_need_no_quotes(project, tmp_path):
    config = load_config(_own_config(tmp_path, _own_csv(tmp_path)))  # positive_class: yes, unquoted
    assert config.data.positive_class == "yes"
    assert load_config(_own_config(tmp_path, "x.csv", name="q"), ["data.positive_class=no"]).data.positive_class == "no"


def test_init_config_writes_a_config_that_trains(project, tmp_path):
    (project.root / "data" / "external").mkdir(parents=True)
    source = _own_csv(project.root / "data" / "external", sep=";", name="renewals.csv")
    result = runner.invoke(app, ["init-config", str(source), "--target", "renewed"])
    assert result.exit_code == 0, result.output
    written = (project.configs_dir / "renewals.yaml").read_text()
    assert (
        'positive_class: "no"   # the rarer of' in written
        and 'id_column: "customer_id"' in written
        and '"sep": ";"' in written
    )
    assert (project.configs_dir / "schemas" / "renewals.yaml").is_file() and "check:" not in result.output
    trained = runner.invoke(app, ["train", "-c", str(project.configs_dir / "renewals.yaml")])
    assert trained.exit_code == 0, trained.output
    again = runner.invoke(app, ["init-config", str(source), "--target", "renewed"])
    assert again.exit_code == 1 and "exists; not overwritten" in again.output


# --- 3. malformed files ---


@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "semicolons",
            'its values are separated by semicolons, not commas; add to the config: data.read_options: {sep: ";"}',
        ),
        ("latin1", "is not utf-8 text: byte"),
        ("header_only", "has a header (4 columns) but no rows"),
        ("duplicated", "has duplicated column names ['spend']"),
    ],
)
def test_malformed_files_are_named_with_the_fix(project, tmp_path, kind, expected):
    if kind == "semicolons":
        source = _own_csv(tmp_path, sep=";")
    elif kind == "latin1":
        source = tmp_path / "mine.csv"
        source.write_bytes(_own_csv(tmp_path).read_bytes().replace(b"basic", "básico".encode("latin-1")))
    elif kind == "header_only":
        source = tmp_path / "mine.csv"
        source.write_text("customer_id,spend,plan,renewed\n")
    else:
        source = tmp_path / "mine.csv"
        source.write_text(
            _own_csv(tmp_path).read_text().replace("customer_id,spend,plan", "customer_id,spend,spend", 1)
        )
    config = _own_config(tmp_path, source)
    for command in (["train", "-c", str(config)], ["data", "-c", str(config)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and expected in result.output and "mine.csv" in result.output, (
            command,
            result.output,
        )
    raw = project.raw_dir / "mine.csv"
    assert raw.read_bytes() == source.read_bytes()  # the raw copy is the file as given: nothing rewritten


def test_infer_schema_reads_other_separators_encodings_and_placeholders(project, tmp_path):
    source = tmp_path / "odd.csv"
    lines = ["id;town;price"] + [
        f"{i};{'Málaga' if i % 2 else 'Cádiz'};{'?' if i % 5 == 0 else i * 10}" for i in range(1, 30)
    ]
    source.write_bytes("\n".join(lines).encode("latin-1"))
    result = runner.invoke(app, ["infer-schema", str(source)])
    assert result.exit_code == 0, result.output
    assert "read with sep=';'" in result.output and "read with encoding='latin-1'" in result.output
    assert "column 'price': 5 placeholder value(s) ['?'] read as missing" in result.output
    assert "price: {dtype: float, nullable: true" in result.output  # a number with missing values, not a category
    assert runner.invoke(app, ["infer-schema", str(source), "--encoding", "utf-8"]).exit_code == 1


def test_placeholders_in_a_number_column_are_read_as_missing(project, tmp_path):
    source = _own_csv(tmp_path)
    frame = pd.read_csv(source).astype({"spend": object})
    frame.loc[[3, 9], "spend"], frame.loc[12, "spend"] = "?", "-"
    frame.to_csv(source, index=False)
    from ml_project.data import load_dataset

    dataset = load_dataset(load_config(_own_config(tmp_path, source)), project)
    assert (
        str(dataset.frame["spend"].dtype) == "float64" and int(dataset.frame["spend"].isna().sum()) == 3
    )  # a number, 3 missing


@pytest.mark.parametrize(
    "rows, labels, expected",
    [
        (5, None, "has 5 rows; 3-fold cross-validation"),
        (300, "one", "has one class"),
        (300, "tiny", "too small to stratify: {'maybe': 2}"),
    ],
)
def test_too_few_rows_or_classes_say_what_is_needed(project, tmp_path, rows, labels, expected):
    source = _own_csv(tmp_path, rows=rows)
    frame = pd.read_csv(source)
    if labels == "one":
        frame["renewed"] = "yes"
    if labels == "tiny":
        frame.loc[:1, "renewed"] = "maybe"
    frame.to_csv(source, index=False)
    config = _own_config(tmp_path, source)
    if labels:
        config.write_text(config.read_text().replace("positive_class: yes, ", ""))
    result = runner.invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 1 and expected in result.output, result.output


# --- 4. hard stops leave a consistent store ---


def _start_train(project, config: str, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [CLI, "train", "-c", config, *extra],
        cwd=project.root,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 120) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}:\n{seen}")


def test_sigterm_closes_the_run_as_killed_and_keeps_models_and_registry(project):
    first = runner.invoke(app, ["train", "-c", "configs/experiment_001.yaml"])
    assert first.exit_code == 0
    before = (project.models_dir / "experiment_001__fast" / "metadata.json").read_text()
    run = _start_train(project, "configs/experiment_001.yaml", "--set", "model.params.n_estimators=400")
    _wait_for_line(run, "cross-validation fold 1/")
    run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=60)[0]
    assert run.returncode == 130 and "interrupted: the MLflow run was closed as KILLED" in output
    runs = _runs(project, "churn")
    assert runs.loc[0, "status"] == "KILLED" and "signal 15" in runs.loc[0, "tags.error"]
    assert (project.models_dir / "experiment_001__fast" / "metadata.json").read_text() == before
    assert [
        str(v.version) for v in MlflowClient(project.mlflow_tracking_uri).search_model_versions("name = 'churn__fast'")
    ] == ["1"]


def test_after_sigkill_the_next_command_fails_the_orphaned_run(project):
    run = _start_train(project, "configs/experiment_001.yaml")
    _wait_for_line(run, "cross-validation fold 1/")
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=30)
    assert _runs(project, "churn").loc[0, "status"] == "RUNNING"
    result = runner.invoke(app, ["train", "-c", "configs/churn_logistic.yaml"])
    assert result.exit_code == 0
    assert "were left RUNNING by a process that is gone: marked FAILED" in result.output
    runs = _runs(project, "churn").set_index("tags.mlflow.runName")
    assert (
        runs.loc["experiment_001__fast", "status"] == "FAILED"
        and "ended without closing it" in runs.loc["experiment_001__fast", "tags.error"]
    )
    assert not list(project.models_dir.glob(".experiment_001*"))  # no half-saved model left behind


def test_a_failure_after_registering_withdraws_the_version_and_keeps_the_model(project, monkeypatch):
    from ml_project.train import experiment

    assert runner.invoke(app, ["train", "-c", "configs/experiment_001.yaml"]).exit_code == 0
    before = (project.models_dir / "experiment_001__fast" / "metadata.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(experiment, "promote", broken)
    result = runner.invoke(app, ["train", "-c", "configs/experiment_001.yaml"])
    assert result.exit_code != 0
    client = MlflowClient(project.mlflow_tracking_uri)
    assert [str(v.version) for v in client.search_model_versions("name = 'churn__fast'")] == ["1"]  # v2 withdrawn
    assert (project.models_dir / "experiment_001__fast" / "metadata.json").read_text() == before
    assert _runs(project, "churn").loc[0, "status"] == "FAILED"


def test_two_commands_at_once_leave_one_true_champion(project):
    runs = [_start_train(project, name) for name in ("configs/churn_logistic.yaml", "configs/churn_xgboost.yaml")]
    outputs = finish(*runs)
    failed = [out[-3000:] for r, out in zip(runs, outputs) if r.returncode != 0]
    assert not failed, "\n-----\n".join(failed)  # the end of each failed output: where the error is
    client = MlflowClient(project.mlflow_tracking_uri)
    versions = sorted(client.search_model_versions("name = 'churn__fast'"), key=lambda v: int(v.version))
    first, second = versions
    assert first.tags["promotion"] == "the first version of churn__fast"  # one judged against nothing ...
    assert (
        f"champion v{first.version}" in second.tags["promotion"]
    )  # ... the other against it, not both against nothing
    champion = client.get_model_version_by_alias("churn__fast", "champion").version
    assert str(champion) == str(second.version if second.tags["promoted"] == "True" else first.version)


_LOG_THE_SAME_DATA = """
import sys, time, types
from pathlib import Path
import mlflow, pandas as pd
from ml_project.train.experiment import _log_dataset
folder, me = Path(sys.argv[1]), sys.argv[2]
mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
mlflow.set_experiment("churn")
dataset = types.SimpleNamespace(frame=pd.DataFrame({"x": range(50), "y": [0, 1] * 25}), raw_path=folder / "table.csv", md5="0123456789ab")
config = types.SimpleNamespace(data=types.SimpleNamespace(target="y"))
with mlflow.start_run():
    (folder / f"ready-{me}").touch()
    while len(list(folder.glob("ready-*"))) < 2: time.sleep(0.001)  # both at the door: then both log at once
    _log_dataset(mlflow, dataset, config)
"""


def test_two_runs_logging_the_same_data_at_once_both_record_it(tmp_path):
    # MLflow checks for the dataset, then inserts it; before the retry the second of two runs failed on the unique key
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.create_experiment("churn")  # the tables exist before the race, as `use_mlflow` leaves them
    script = tmp_path / "log.py"
    script.write_text(_LOG_THE_SAME_DATA)
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), me],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for me in "ab"
    ]
    outputs = finish(*runs, timeout=120)
    assert [r.returncode for r in runs] == [0, 0], "\n-----\n".join(o[-2000:] for o in outputs)
    logged = mlflow.search_runs(experiment_names=["churn"], output_format="list")
    assert [[d.dataset.name for d in run.inputs.dataset_inputs] for run in logged] == [["table"], ["table"]]


# --- 5. progress and a correct summary ---


def test_train_shows_its_stages_unless_quiet_and_marks_only_the_final_champion(project):
    result = runner.invoke(app, ["train", "-c", "configs/experiment_001.yaml", "-c", "configs/churn_xgboost.yaml"])
    assert result.exit_code == 0
    assert (
        "cross-validation fold 3/3" in result.output and "final fit" in result.output and "registering" in result.output
    )
    table = result.output.split("champion: holds the alias now):")[1]
    champion = str(
        MlflowClient(project.mlflow_tracking_uri).get_model_version_by_alias("churn__fast", "champion").version
    )
    flags = {line.split()[0]: line.split()[-1] for line in table.strip().splitlines()[2:]}
    assert list(flags.values()).count("True") == 1
    assert flags["experiment_001" if champion == "1" else "churn_xgboost"] == "True"
    quiet = runner.invoke(app, ["train", "-q", "-c", "configs/churn_logistic.yaml"])
    assert quiet.exit_code == 0 and "cross-validation fold" not in quiet.output and "champion decision" in quiet.output


def test_mode_is_a_choice_and_version_is_printed(project):
    result = runner.invoke(app, ["train", "-c", "configs/experiment_001.yaml", "--mode", "quick"])
    assert result.exit_code == 2 and "'quick' is not one of" in result.output and "careful" in result.output
    assert runner.invoke(app, ["--version"]).output.startswith("ml-project ")
