"""A Dask cluster for the project: started here as processes, or any existing one reached by its scheduler's address.

    ml-project services start --dask 2 [--no-tracking]   # make cluster: a scheduler and 2 workers on 127.0.0.1
    ml-project services stop                             # stops them by their PIDs (and the tracking services)
    export ML_PROJECT_DASK_SCHEDULER=tcp://127.0.0.1:8786  # or settings.ini's dask_scheduler, or --cluster ADDRESS

The engine is Dask's own: `dask scheduler` and `dask worker` (each worker under a nanny, which restarts it when it dies),
the same programs a real cluster runs through dask-kubernetes, dask-jobqueue or a cloud provider. This module only
starts them on this machine, records their PIDs under `.services/dask/`, and connects a client that refuses workers
whose packages differ from its own: a model unpickled by another scikit-learn or XGBoost may answer differently, so
the versions that decide an answer must match exactly (the lock's versions on every machine).

A plain module, not a notebook: process plumbing, with nothing to explore; tests/test_cluster.py tests it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ml_project.errors import ConfigError, ServiceError
from ml_project.search.services import _pid  # a PID file's process, if alive
from ml_project.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "MATCHED_PACKAGES",
    "LocalCluster",
    "check_versions",
    "cluster_address",
    "cluster_status",
    "connect",
    "local_cluster",
    "start_cluster",
    "stop_cluster",
]

# What decides a model's answers on a worker: these must be the client's versions exactly (Dask's own check covers
# python, dask, distributed, msgpack, cloudpickle, tornado, toolz)
MATCHED_PACKAGES = ("ml-project", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "xgboost", "joblib")


@dataclass
class LocalCluster:
    "A scheduler and workers this project started on 127.0.0.1, and where their PIDs and logs are."

    folder: Path  # `.services/dask/` at the project root
    port: int = 8786  # the scheduler's port on 127.0.0.1 (Dask's default)
    workers: int = 2  # worker processes, each under its own nanny
    threads: int = 1  # threads per worker: one, so a worker's memory limit is one task's
    memory_limit: str = ""  # per worker, in Dask's units (`4GiB`); empty: 80 % of this machine's memory shared out

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def pid_file(self, process: str) -> Path:
        return self.folder / f"{process}.pid"

    @property
    def processes(self) -> list[str]:
        return ["scheduler", *(f"worker-{i}" for i in range(1, self.workers + 1))]


def local_cluster(settings: Settings, port: int | None = None, workers: int | None = None) -> LocalCluster:
    "The project's local cluster: ports and size as given, else those the last `start_cluster` used, else the defaults."
    folder = settings.root / ".services" / "dask"
    saved = (
        dict(line.split("=", 1) for line in (folder / "cluster").read_text().split())
        if (folder / "cluster").is_file()
        else {}
    )
    return LocalCluster(folder, port or int(saved.get("port", 8786)), workers or int(saved.get("workers", 2)),
                        int(saved.get("threads", 1)), saved.get("memory_limit", ""))  # fmt: skip


def _memory_share(workers: int) -> str:
    import psutil

    return f"{int(psutil.virtual_memory().total * 0.8 / workers) // 2**20}MiB"


def _dask_program() -> str:
    "The `dask` command of this environment (beside this Python), so workers run the client's packages."
    found = Path(sys.executable).with_name("dask")
    if not found.exists():
        found = shutil.which("dask")
        if not found:
            raise ConfigError("Dask is not installed in this environment: `make install` installs it (the lock has it)")
    return str(found)


def _dashboard_args() -> list[str]:
    "The dashboard on 127.0.0.1 when bokeh is installed; never required."
    import importlib.util

    return ["--dashboard-address", "127.0.0.1:0"] if importlib.util.find_spec("bokeh") else ["--no-dashboard"]


def start_cluster(
    cluster: LocalCluster,  # where and how large (`local_cluster`)
    timeout: float = 60,  # seconds for the scheduler and every worker to come up
) -> LocalCluster:
    "Start a scheduler and `cluster.workers` workers as separate processes on 127.0.0.1; return once all are connected."
    if any(_pid(cluster.pid_file(p)) for p in cluster.processes):
        raise ServiceError(f"a Dask cluster of this project is already running ({cluster.address}): "
                           "`ml-project services stop` stops it")  # fmt: skip
    if cluster.workers < 1 or cluster.threads < 1:
        raise ConfigError(f"a cluster needs at least one worker of one thread (asked: {cluster.workers} workers, "
                          f"{cluster.threads} threads)")  # fmt: skip
    cluster.memory_limit = cluster.memory_limit or _memory_share(cluster.workers)
    _check_memory_limit(cluster.memory_limit)
    cluster.folder.mkdir(parents=True, exist_ok=True)
    (cluster.folder / "cluster").write_text(f"port={cluster.port}\nworkers={cluster.workers}\n"
                                            f"threads={cluster.threads}\nmemory_limit={cluster.memory_limit}\n")  # fmt: skip
    dask = _dask_program()
    commands = {
        "scheduler": [dask, "scheduler", "--host", "127.0.0.1", "--port", str(cluster.port), *_dashboard_args()]
    }
    for i in range(1, cluster.workers + 1):
        commands[f"worker-{i}"] = [
            dask, "worker", cluster.address, "--host", "127.0.0.1", "--name", f"worker-{i}",
            "--nthreads", str(cluster.threads), "--memory-limit", cluster.memory_limit, "--no-dashboard",
            "--local-directory", str(cluster.folder / f"worker-{i}"), "--death-timeout", "60",
        ]  # fmt: skip
    try:
        started = {}
        for process, command in commands.items():
            with open(cluster.folder / f"{process}.log", "ab") as output:
                # A session of its own: stopped with its children (the nanny's worker) by its process group
                started[process] = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                                    start_new_session=True, stdin=subprocess.DEVNULL)  # fmt: skip
            cluster.pid_file(process).write_text(str(started[process].pid))
            if process == "scheduler":
                _wait_scheduler(cluster, started[process], timeout)
        _wait_workers(cluster, started, timeout)
    except Exception:
        stop_cluster(cluster)
        raise
    return cluster


def _check_memory_limit(limit: str):
    from dask.utils import parse_bytes

    try:
        parse_bytes(limit)
    except (ValueError, TypeError):
        raise ConfigError(
            f"memory limit {limit!r} is not a size: write it as 4GiB, 500MB or a number of bytes"
        ) from None


def _wait_workers(cluster: LocalCluster, started: dict[str, subprocess.Popen], timeout: float):
    "Return once every worker has joined; a clear error naming a worker that stopped, or the ones that never came."
    with connect(cluster.address, timeout=timeout, check=False) as client:
        deadline = time.monotonic() + timeout
        while (joined := len(client.nthreads())) < cluster.workers:
            for process, handle in started.items():
                if handle.poll() is not None:
                    raise ServiceError(f"Dask's {process} stopped at start ({handle.returncode}): see "
                                       f"{cluster.folder / (process + '.log')}")  # fmt: skip
            if time.monotonic() > deadline:
                raise ServiceError(f"{joined} of {cluster.workers} Dask workers joined within {timeout:.0f} s: see "
                                   f"the worker logs in {cluster.folder}")  # fmt: skip
            time.sleep(0.2)


def _wait_scheduler(cluster: LocalCluster, started: subprocess.Popen, timeout: float):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started.poll() is not None:
            raise ServiceError(f"the Dask scheduler stopped at start ({started.returncode}): see "
                               f"{cluster.folder / 'scheduler.log'}")  # fmt: skip
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", cluster.port)) == 0:
                return
        time.sleep(0.2)
    raise ServiceError(f"the Dask scheduler did not listen on {cluster.address} within {timeout:.0f} s")


def stop_cluster(
    cluster: LocalCluster,  # the project's local cluster
    timeout: float = 20,  # seconds each process has to stop on SIGTERM before SIGKILL
):
    "Stop the workers, then the scheduler, each by its PID (its whole process group); nothing is left running."
    for process in reversed(cluster.processes):
        pid = _pid(cluster.pid_file(process))
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid(cluster.pid_file(process)) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        cluster.pid_file(process).unlink(missing_ok=True)


def cluster_status(cluster: LocalCluster) -> dict[str, bool]:
    "Whether each of the local cluster's processes is alive."
    return {process: bool(_pid(cluster.pid_file(process))) for process in cluster.processes}


def _installed_versions() -> dict[str, str | None]:
    "This process's versions of the packages that decide a model's answers (run on every worker too)."
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in MATCHED_PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def _worker_name(dask_worker) -> str:
    return str(dask_worker.name)


def check_versions(
    client,  # a Dask client
    expected: dict[str, str | None] | None = None,  # package -> version (default: this process's)
) -> None:
    "A clear error naming each worker whose packages differ from the client's; nothing when they all match."
    try:
        client.get_versions(check=True)  # Dask's own: python, dask, distributed, msgpack, cloudpickle...
    except ValueError as e:
        raise ServiceError(f"the cluster's workers run other versions than this client: {e}") from None
    mine = expected or _installed_versions()
    names = {
        address: f"{w.get('name', address)} ({address})" for address, w in client.scheduler_info()["workers"].items()
    }
    differences = [
        f"{names.get(worker, worker)}: {package} {theirs} (here {mine.get(package)})"
        for worker, found in client.run(_installed_versions).items()
        for package, theirs in found.items()
        if theirs != mine.get(package)
    ]
    if differences:
        raise ServiceError("the cluster's workers run other versions of the packages that decide a model's answers "
                           "(install the same lock file on every machine): " + "; ".join(differences))  # fmt: skip


def connect(
    address: str,  # the scheduler, e.g. tcp://10.0.0.5:8786
    timeout: float = 30,  # seconds to reach it
    check: bool = True,  # refuse workers whose packages differ from the client's
):
    "A Dask client on the cluster at `address`, its workers' versions checked; a clear error when it cannot be reached."
    import socket
    from urllib.parse import urlsplit

    from distributed import Client

    where = urlsplit(address)
    if where.scheme == "tcp" and where.hostname and where.port:  # refused at once, rather than after Dask's retries
        try:
            socket.create_connection((where.hostname, where.port), timeout=min(timeout, 5)).close()
        except OSError as e:
            raise ServiceError(f"no Dask scheduler answers at {address} ({e.strerror or e}): start one with "
                               "`ml-project services start --dask 2` (make cluster), or check the address") from None  # fmt: skip
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ServiceError(f"no Dask scheduler answers at {address} ({e.__class__.__name__}): start one with "
                           "`ml-project services start --dask 2` (make cluster), or check the address") from None  # fmt: skip
    if check:
        try:
            check_versions(client)
        except Exception:
            client.close()
            raise
    return client


def cluster_address(
    settings: Settings,  # its `dask_scheduler` is the default
    given: str | None = None,  # `--cluster ADDRESS`: wins over the setting
) -> str | None:
    "The scheduler to use: `given`, else the `dask_scheduler` setting; None to stay in this process."
    address = given or settings.dask_scheduler or None
    if address and "://" not in address:
        address = f"tcp://{address}"
    return address
