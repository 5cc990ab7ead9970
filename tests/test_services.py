"""Team scale: `ml-project services` starts PostgreSQL and an MLflow server on it; separate `tune` commands, as two
machines would start them, share one study and one tracking server; a third process sees their runs and versions."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import _new_project, finish, free_port
from optuna.trial import TrialState

BIN = Path(sys.executable).parent
HAVE_POSTGRES = bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))
pytestmark = pytest.mark.skipif(
    not HAVE_POSTGRES and not os.environ.get("CI"),
    reason="needs the Debian package postgresql (make services installs it)",
)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    "A project with its services started on free ports; stopped (and checked stopped) at the end."
    root = tmp_path_factory.mktemp("team") / "project"
    _new_project(root)
    # pytest's folder is 0700, as /root is: as root, `services start` itself lets PostgreSQL's user through to the cluster
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PROJECT_")} | {
        "ML_PROJECT_ROOT": str(root),
        "ML_PROJECT_MODE": "fast",
    }
    pg_port, mlflow_port = free_port(), free_port()
    started = subprocess.run(
        [str(BIN / "ml-project"), "services", "start", "--pg-port", str(pg_port), "--mlflow-port", str(mlflow_port)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    urls = dict(
        line.strip().removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if "export ML_PROJECT_" in line
    )
    yield root, env | urls, urls
    stopped = subprocess.run(
        [str(BIN / "ml-project"), "services", "stop"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    status = subprocess.run(
        [str(BIN / "ml-project"), "services", "status"], cwd=root, env=env, capture_output=True, text=True
    )
    assert status.returncode == 1 and "postgresql: down" in status.stdout and "mlflow: down" in status.stdout


def test_services_listen_on_localhost_with_an_owner_only_password(team):
    root, _, urls = team
    password = root / ".services" / "postgres.password"
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert urls["ML_PROJECT_MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert (
        "@127.0.0.1:" in urls["ML_PROJECT_OPTUNA_STORAGE"]
        and password.read_text().strip() in urls["ML_PROJECT_OPTUNA_STORAGE"]
    )
    conf = subprocess.run(
        ["grep", "-h", "listen_addresses", str(root / ".services" / "postgres" / "postmaster.opts")],
        capture_output=True,
        text=True,
    )
    assert "listen_addresses=127.0.0.1" in conf.stdout
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            urls["ML_PROJECT_OPTUNA_STORAGE"]
            .replace("postgresql+psycopg", "postgresql")
            .replace(password.read_text().strip(), "wrong")
        )


def _tune(root, env, *args):
    return subprocess.Popen(
        [str(BIN / "ml-project"), "tune", "-c", "configs/churn_logistic.yaml", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_tune_commands_share_one_study_and_one_tracking_server(team):
    root, env, urls = team
    # started separately, as on two machines: nothing shared but the two URLs in the environment
    first, second = _tune(root, env, "--trials", "3"), _tune(root, env, "--trials", "3")
    outputs = finish(first, second, timeout=600)
    assert [first.returncode, second.returncode] == [0, 0], "\n-----\n".join(o[-3000:] for o in outputs)
    study = optuna.load_study(study_name="churn_logistic__fast", storage=urls["ML_PROJECT_OPTUNA_STORAGE"])
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(6))  # exactly the trials asked for, none run twice
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both commands did work
    # a third process sees both searches, their trials and the versions they registered
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os, mlflow; from mlflow.tracking import MlflowClient\n"
                "client = MlflowClient(os.environ['ML_PROJECT_MLFLOW_TRACKING_URI'])\n"
                "runs = mlflow.search_runs(experiment_names=['churn'], output_format='list')\n"
                "versions = client.search_model_versions(\"name = 'churn__fast'\")\n"
                "print(sum(r.data.tags.get('kind') == 'tuning' for r in runs), sum('trial' in r.data.tags for r in runs), len(versions),"
                " client.get_model_version_by_alias('churn__fast', 'champion').version)"
            ),
        ],
        env={**env, "MLFLOW_TRACKING_URI": urls["ML_PROJECT_MLFLOW_TRACKING_URI"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    parents, trial_runs, versions, champion = check.stdout.split()
    assert (int(parents), int(trial_runs), int(versions)) == (2, 6, 2) and champion in ("1", "2")
    assert not (root / "mlflow.db").exists()  # nothing went to the local SQLite store


def test_a_worker_killed_on_another_machine_is_failed_by_its_heartbeat(team, tmp_path):
    from ml_project.search.space import TRIAL_GATE
    from ml_project.search.study import HEARTBEAT_SECONDS

    root, env, urls = team
    storage, gate = urls["ML_PROJECT_OPTUNA_STORAGE"], tmp_path / "gate"
    gate.touch()
    name = "churn_xgboost__fast"
    doomed = subprocess.Popen(
        [str(BIN / "ml-project"), "tune", "-c", "configs/churn_xgboost.yaml", "--timeout", "300", "--no-refit"],
        cwd=root,
        env={**env, TRIAL_GATE: str(gate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # one trial finished, the next held RUNNING by the gate
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except KeyError:
            trials = []
        if any(t.state == TrialState.COMPLETE for t in trials) and any(t.state == TrialState.RUNNING for t in trials):
            break
        time.sleep(0.5)
    else:
        doomed.kill()
        raise AssertionError("no RUNNING trial after a finished one:\n" + doomed.communicate()[0][-3000:])
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=60)
    gate.unlink()
    # as if it had run on another machine: this host cannot see its process, so only its stopped heartbeat can tell
    study = optuna.load_study(study_name=name, storage=storage)
    (running,) = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    study._storage.set_trial_user_attr(running._trial_id, "worker", "another-machine:4242")
    # The grace period (three missed beats) passes: its last beat moved back by that much, rather than waiting 32 s.
    from sqlalchemy import text

    with study._storage._backend.engine.begin() as db:
        moved = db.execute(
            text("UPDATE trial_heartbeats SET heartbeat = heartbeat - make_interval(secs => :s) WHERE trial_id = :t"),
            {"s": 3 * HEARTBEAT_SECONDS + 2, "t": running._trial_id},
        ).rowcount
    assert moved == 1  # the killed worker had been beating
    survivor = subprocess.run(
        [str(BIN / "ml-project"), "tune", "-c", "configs/churn_xgboost.yaml", "--trials", "2", "--no-refit"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert survivor.returncode == 0, (survivor.stdout + survivor.stderr)[-3000:]
    assert f"trials [{running.number}] had lost their worker: marked failed" in survivor.stdout, survivor.stdout[-2000:]
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [running.number]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3  # 1 before the kill, 2 after
