"""A Dask cluster as a user runs one (ml_project.cluster.engine, `ml-project services start --dask N`) and batch
scoring on it (`ml-project predict --cluster`): the scheduler and workers are separate processes on 127.0.0.1,
stopped by their PIDs; workers whose packages differ from the client's are refused; the answers equal the in-process
command's to 1e-9; a worker killed mid-job (SIGKILL) costs no row and duplicates none; an interrupted client leaves no
output behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, free_port

from ml_project.cluster import engine
from ml_project.errors import ServiceError


def _cli(*args, root, **kwargs):
    return subprocess.run([str(BIN / "ml-project"), *args], cwd=root, capture_output=True, text=True, timeout=300,
                          **kwargs)  # fmt: skip


@pytest.fixture
def cluster(trained_churn):
    "The test project's cluster, two one-thread workers on free ports, started and stopped with the command."
    root = trained_churn.root
    port = free_port()
    started = _cli("services", "start", "--dask", "2", "--no-tracking", "--dask-port", str(port),
                   "--memory-limit", "2GiB", root=root)  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"ML_PROJECT_DASK_SCHEDULER=tcp://127.0.0.1:{port}" in started.stdout
    local = engine.local_cluster(trained_churn)
    pids = {p: int(local.pid_file(p).read_text()) for p in local.processes}
    yield trained_churn, local, pids
    stopped = _cli("services", "stop", root=root)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in pids.values():  # stopped by PID: none of them, nor their process groups, is left
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def _resampled(settings, rows: int):
    "The churn test split resampled to `rows` rows with unique ids (`rownames`)."
    from ml_project.config import load_config
    from ml_project.split import load_splits

    X = load_splits(load_config(settings.configs_dir / "churn_xgboost.yaml"), settings).X["test"]
    frame = X.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    frame.insert(0, "rownames", np.arange(1, rows + 1))
    return frame


def _pieces(frame: pd.DataFrame, files: int) -> list[pd.DataFrame]:
    size = -(-len(frame) // files)
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


def _as_parquet_files(frame: pd.DataFrame, files: int, folder) -> pd.DataFrame:
    "`frame` as `files` Parquet files in `folder` (a dataset of as many partitions)."
    folder.mkdir(parents=True)
    for i, part in enumerate(_pieces(frame, files)):
        part.to_parquet(folder / f"part{i:03d}.parquet", index=False)
    return frame


def test_the_cluster_starts_on_loopback_scores_as_one_process_does_and_stops(cluster, tmp_path):
    settings, local, _ = cluster
    root = settings.root
    status = _cli("services", "status", root=root)
    assert "dask scheduler: up" in status.stdout and "dask worker-2: up" in status.stdout

    with engine.connect(local.address) as client:
        info = client.scheduler_info()["workers"]
        assert len(info) == 2 and all(address.startswith("tcp://127.0.0.1:") for address in info)
        assert {w["nthreads"] for w in info.values()} == {1}

    # Two CSV files with a bad row each: scored on the cluster, the same answers as `predict` in this process
    frame = _resampled(settings, 2_000).astype(object)
    frame.loc[10, "tenure"], frame.loc[1500, "monthly_charges"] = "unknown", "12,50"
    for i, part in enumerate(_pieces(frame, 2)):
        part.to_csv(tmp_path / f"new{i}.csv", index=False)
    pd.concat([frame]).to_csv(tmp_path / "all.csv", index=False)
    env = {**os.environ, "ML_PROJECT_DASK_SCHEDULER": local.address}
    on_cluster = _cli("predict", "--model", "churn__fast", "-i", f"{tmp_path}/new*.csv", "-o", str(tmp_path / "scored"),
                      root=root, env=env)  # fmt: skip
    assert on_cluster.returncode == 3, on_cluster.stdout + on_cluster.stderr  # some rows rejected, the others scored
    assert "scored 1,998 of 2,000 rows" in on_cluster.stdout and "(2 workers)" in on_cluster.stderr
    here = _cli("predict", "--model", "churn__fast", "-i", str(tmp_path / "all.csv"), "-o", str(tmp_path / "here.parquet"),
                root=root, env={**env, "ML_PROJECT_DASK_SCHEDULER": ""})  # fmt: skip
    assert here.returncode == 3, here.stdout + here.stderr
    ours = pd.read_parquet(tmp_path / "scored").sort_values("rownames").reset_index(drop=True)
    theirs = pd.read_parquet(tmp_path / "here.parquet").sort_values("rownames").reset_index(drop=True)
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == ["part.00000.parquet", "part.00001.parquet"]
    assert ours["rownames"].astype(int).tolist() == theirs["rownames"].astype(int).tolist()
    assert (ours["prediction"] == theirs["prediction"]).all()
    np.testing.assert_allclose(ours["probability"], theirs["probability"], rtol=0, atol=1e-9)
    rejects = pd.concat(pd.read_csv(p) for p in (tmp_path / "scored.rejects").glob("*.csv"))
    assert sorted(rejects["field"]) == ["monthly_charges", "tenure"] and rejects["error"].str.len().min() > 0
    assert sorted(rejects["rownames"]) == [11, 1501]

    # A clear error, exit 1 and nothing written, for an input that is not there and a scheduler that does not answer
    missing = _cli("predict", "--model", "churn__fast", "-i", f"{tmp_path}/none*.csv", "-o", str(tmp_path / "x"), root=root,
                   env=env)  # fmt: skip
    assert missing.returncode == 1 and "nothing to read" in missing.stderr and not (tmp_path / "x").exists()
    away = _cli("predict", "--model", "churn__fast", "-i", str(tmp_path / "all.csv"), "-o", str(tmp_path / "y"),
                "--cluster", f"127.0.0.1:{free_port()}", root=root)  # fmt: skip
    assert away.returncode == 1 and "no Dask scheduler answers" in away.stderr, away.stderr


def test_workers_with_other_versions_are_refused(cluster):
    _, local, _ = cluster
    with engine.connect(local.address) as client:  # the same environment: accepted
        other = {**engine._installed_versions(), "scikit-learn": "0.0.1"}  # a client with another scikit-learn
        with pytest.raises(
            ServiceError, match=r"worker-\d \(tcp://127\.0\.0\.1:\d+\): scikit-learn \S+ \(here 0\.0\.1\); worker-\d"
        ):
            engine.check_versions(client, other)


def test_a_worker_killed_mid_job_costs_no_row_and_duplicates_none(cluster, tmp_path):
    settings, local, _ = cluster
    frame = _as_parquet_files(_resampled(settings, 200_000), 40, tmp_path / "big")
    out = tmp_path / "scored"
    job = subprocess.Popen([str(BIN / "ml-project"), "predict", "--model", "churn__fast", "-i", str(tmp_path / "big"), "-o",
                            str(out), "--cluster", local.address], cwd=settings.root, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    with engine.connect(local.address, check=False) as client:
        worker_pids = client.run(os.getpid)  # the worker processes, under their nannies
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("scored.partial-*/part.*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.02)
        written_before = len(list(tmp_path.glob("scored.partial-*/part.*.parquet")))
        victim = min(worker_pids.values())
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stdout + stderr
    assert 0 < written_before < 40  # killed mid-job
    scored = pd.read_parquet(out)
    assert len(list(out.iterdir())) == 40 and len(scored) == len(frame)  # every partition once, every row once
    assert scored["rownames"].is_unique and set(scored["rownames"]) == set(frame["rownames"])
    assert not list(tmp_path.glob("*.partial-*"))


def test_an_interrupted_client_leaves_no_output(cluster, tmp_path):
    settings, local, _ = cluster
    _as_parquet_files(_resampled(settings, 200_000), 40, tmp_path / "big")
    job = subprocess.Popen([str(BIN / "ml-project"), "predict", "--model", "churn__fast", "-i", str(tmp_path / "big"), "-o",
                            str(tmp_path / "scored"), "--cluster", local.address], cwd=settings.root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("scored.partial-*/part.*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGINT)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 130 and "nothing was written" in stderr, stdout + stderr
    time.sleep(2)  # tasks that were running when it stopped have finished by now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big", "project"]  # no output, no partial folder


def test_a_bad_memory_limit_is_refused_by_name_before_anything_starts(project):
    done = _cli("services", "start", "--dask", "1", "--no-tracking", "--dask-port", str(free_port()),
                "--memory-limit", "lots", root=project.root)  # fmt: skip
    assert done.returncode == 1 and "memory limit 'lots' is not a size" in done.stderr, done.stdout + done.stderr
    assert not any(engine.cluster_status(engine.local_cluster(project)).values())


def _metadata(settings, experiment: str = "churn_xgboost") -> dict:
    import json

    return json.loads((settings.models_dir / experiment / "metadata.json").read_text())


def test_training_on_the_cluster_agrees_with_one_process_and_is_served(cluster, tmp_path):
    "Churn in careful mode, split by the same hash: the same rows, ROC-AUC within 0.01; then a Parquet folder read in place."
    settings, local, _ = cluster
    root = settings.root
    same = ["--mode", "careful", "--set", "split.method=hash", "--set", "training.cv_folds=2",
            "--set", "model.params.learning_rate=0.1", "-c", "configs/churn_xgboost.yaml"]  # fmt: skip
    here = _cli("train", "-q", *same, root=root)
    assert here.returncode == 0, here.stdout + here.stderr
    in_process = _metadata(settings)
    there = _cli("train", "-q", *same, "--cluster", local.address, root=root)
    assert there.returncode == 0, there.stdout + there.stderr
    assert "training on the cluster" in there.stderr and "(2 workers)" in there.stderr
    on_cluster = _metadata(settings)
    assert on_cluster["engine"] == "dask" and in_process.get("engine") is None
    assert on_cluster["rows"] == in_process["rows"] and on_cluster["data_md5"] == in_process["data_md5"]
    for split in ("valid", "test"):  # the stated tolerance: early stopping judges other rows, the steps see a sample
        ours, theirs = on_cluster["metrics"][f"{split}_roc_auc"], in_process["metrics"][f"{split}_roc_auc"]
        assert abs(ours - theirs) <= 0.01, (split, ours, theirs)
    assert "champion decision" in there.stdout  # judged against the one-process champion, on the same validation rows

    # 20,000 rows as a Parquet dataset of four files, outside the project, read in place; registered; served
    from ml_project.config import load_config
    from ml_project.data import load_dataset
    from ml_project.serve.predictor import ModelPredictor

    rows = load_dataset(load_config(settings.configs_dir / "churn_xgboost.yaml"), settings).frame
    rows = rows.sample(20_000, replace=True, random_state=0).reset_index(drop=True)
    rows["rownames"] = np.arange(1, len(rows) + 1)
    _as_parquet_files(rows, 4, tmp_path / "big")
    big = _cli("train", "-c", "configs/churn_xgboost.yaml", "--cluster", local.address, "--input", str(tmp_path / "big"),
               "--set", "model.params.learning_rate=0.1", root=root)  # fmt: skip
    assert big.returncode == 0, big.stdout + big.stderr
    assert "registered churn__fast v" in big.stdout
    saved = _metadata(settings, "churn_xgboost__fast")  # fast mode's model, beside the careful one
    assert saved["data_path"] == str(tmp_path / "big") and saved["data_md5"] != in_process["data_md5"]
    assert abs(sum(saved["rows"].values()) - settings.fast_sample_rows) < 0.1 * settings.fast_sample_rows  # fast mode
    predictor = ModelPredictor.from_path(settings.models_dir / "churn_xgboost__fast", settings)
    answer = predictor.predict(rows.head(100)[list(saved["input_schema"])])
    assert not answer.rejected and set(answer.labels) <= {"Yes", "No"} and answer.probabilities.shape == (100, 2)


def test_what_does_not_train_on_a_cluster_is_refused_by_name(project):
    from typer.testing import CliRunner

    from ml_project.cli import app

    def train(config, *args):
        return CliRunner().invoke(app, ["train", "-c", str(project.root / config), *args])

    forest = train("configs/experiment_001.yaml", "--cluster", f"127.0.0.1:{free_port()}")
    assert forest.exit_code == 1 and "model.type 'random_forest' cannot train on a Dask cluster" in forest.output
    alone = train("configs/churn_xgboost.yaml", "--input", "rows.parquet")
    assert alone.exit_code == 1 and "--input trains on a Dask cluster" in alone.output
    nowhere = train("configs/churn_xgboost.yaml", "--set", "training.engine=dask")
    assert nowhere.exit_code == 1 and "no cluster is named" in nowhere.output, nowhere.output
    away = train("configs/churn_xgboost.yaml", "--cluster", f"127.0.0.1:{free_port()}")
    assert away.exit_code == 1 and "no Dask scheduler answers" in away.output
    assert not (project.models_dir / "churn_xgboost").exists()
