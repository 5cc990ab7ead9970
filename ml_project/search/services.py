"""Shared services for a team: a PostgreSQL server and an MLflow tracking server backed by it, under `.services/`.

    ml-project services start [--pg-port 5433] [--mlflow-port 5000]     # make services
    ml-project services stop                                            # make services-stop
    ml-project services status

One machine's SQLite files serve one user. When several processes or machines tune one study and log to one tracking
store, they need a database server: SQLite over a network file system corrupts under concurrent writers, and its
file lock serialises every trial's writes. This module starts the Debian package's PostgreSQL with a cluster of its
own under `.services/postgres/` (listening on 127.0.0.1 only, password authentication with a generated password kept
in `.services/postgres.password`, readable by its owner only), creates two databases (`mlflow`, `optuna`), and starts
`mlflow server` on the first, with artefacts under `.services/mlartifacts/` served through the server. It prints the
two URLs to point the project at (`ML_PROJECT_MLFLOW_TRACKING_URI`, `ML_PROJECT_OPTUNA_STORAGE`, or the same keys in
`settings.ini`); nothing changes for a user who does not.

A plain module, not a notebook: it is process plumbing with nothing to explore; tests/test_services.py tests it.
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ml_project.errors import ConfigError, ServiceError
from ml_project.settings import Settings
from ml_project.train.tracking import _alive

log = logging.getLogger(__name__)

USER = "mlproject"
DATABASES = ("mlflow", "optuna")


@dataclass
class Services:
    "Where a project's services live and how to reach them."

    folder: Path  # `.services/` at the project root
    pg_port: int = 5433  # PostgreSQL's port on 127.0.0.1 (5433: beside a system server on 5432)
    mlflow_port: int = 5000  # the MLflow server's port on 127.0.0.1

    @property
    def data(self) -> Path:
        return self.folder / "postgres"

    @property
    def password_file(self) -> Path:
        return self.folder / "postgres.password"

    @property
    def ports_file(self) -> Path:
        return self.folder / "ports"

    @property
    def mlflow_pid(self) -> Path:
        return self.folder / "mlflow.pid"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def database_url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        "The SQLAlchemy URL of one of the server's databases."
        return f"{driver}://{USER}:{self.password()}@127.0.0.1:{self.pg_port}/{database}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


def services_for(settings: Settings, pg_port: int | None = None, mlflow_port: int | None = None) -> Services:
    "The project's services; ports as given, else those the last `start` used, else the defaults."
    folder = settings.root / ".services"
    saved = (
        dict(line.split("=", 1) for line in (folder / "ports").read_text().split())
        if (folder / "ports").is_file()
        else {}
    )
    return Services(folder, pg_port or int(saved.get("pg", 5433)), mlflow_port or int(saved.get("mlflow", 5000)))


def _pg_program(name: str) -> str:
    "A PostgreSQL program: on PATH, else from the Debian package's versioned folder."
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ConfigError(
            f"PostgreSQL's {name} is not installed: `make services` installs the Debian package postgresql "
            "(or: sudo apt-get install postgresql)"
        )
    return found


def _as_server_user(command: list[str]) -> list[str]:
    "PostgreSQL refuses to run as root: as root, run `command` as the package's `postgres` user."
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise ServiceError(
            f"{' '.join(command[:6])} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}"
        )
    return done


def _let_server_through(folder: Path) -> list[Path]:
    """As root, PostgreSQL runs as `postgres`, which must pass through the folders above its cluster (a project under
    /root, a 0700 temporary folder): add the others' execute bit (pass, not list) where it is missing; return them."""
    changed = []
    for parent in [folder, *folder.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
            changed.append(parent)
    if changed:
        log.warning(
            "let PostgreSQL's user pass through %s (o+x: it can reach the cluster, not list the folders)",
            ", ".join(map(str, changed)),
        )
    return changed


def _init_cluster(services: Services):
    "A new cluster with password authentication for `USER`, the password generated and kept owner-only."
    services.folder.mkdir(parents=True, exist_ok=True)
    if not services.password_file.is_file():
        fd = os.open(services.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    services.data.mkdir(mode=0o700)
    # initdb reads the password from a file the server's user can read: a copy, deleted straight after
    copy = services.folder / ".initdb-password"
    copy.write_text(services.password() + "\n")
    copy.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(services.data, "postgres", "postgres")
        shutil.chown(copy, "postgres", "postgres")
    try:
        _run(
            _as_server_user(
                [
                    _pg_program("initdb"),
                    "-D",
                    str(services.data),
                    "-U",
                    USER,
                    f"--pwfile={copy}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
        )
    finally:
        copy.unlink(missing_ok=True)


def _pg_running(services: Services) -> bool:
    return (
        services.data.is_dir()
        and subprocess.run(
            _as_server_user([_pg_program("pg_ctl"), "-D", str(services.data), "status"]), capture_output=True
        ).returncode
        == 0
    )


def _start_postgres(services: Services):
    if os.geteuid() == 0:
        _let_server_through(services.folder)  # before initdb, and again for a project moved since
    if not (services.data / "PG_VERSION").is_file():
        _init_cluster(services)
    if _pg_running(services):
        return
    log = services.folder / "postgres.log"
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    # localhost only, and the socket in the cluster's folder (the system's /var/run/postgresql may not be ours to write)
    options = f"-c listen_addresses=127.0.0.1 -p {services.pg_port} -k {services.data}"
    _run(
        _as_server_user(
            [_pg_program("pg_ctl"), "-D", str(services.data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
        )
    )
    import psycopg

    with psycopg.connect(services.database_url("postgres", "postgresql"), autocommit=True) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for database in DATABASES:
            if database not in existing:
                connection.execute(f'CREATE DATABASE "{database}"')


def _pid(path: Path) -> int | None:
    "The process id in `path`, if that process is still alive."
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _start_mlflow(services: Services, timeout: float = 120):
    if _pid(services.mlflow_pid) and _healthy(services.tracking_uri):
        return
    artifacts = services.folder / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = open(services.folder / "mlflow.log", "ab")
    mlflow = str(Path(sys.executable).parent / "mlflow")
    process = subprocess.Popen(
        [
            mlflow,
            "server",
            "--backend-store-uri",
            services.database_url("mlflow"),
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(services.mlflow_port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # its own group: stopped as one
    services.mlflow_pid.write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(
                f"mlflow server stopped (exit {process.returncode}); see {services.folder / 'mlflow.log'}"
            )
        if _healthy(services.tracking_uri):
            return
        time.sleep(0.5)
    raise ServiceError(
        f"mlflow server did not answer on {services.tracking_uri} within {timeout:.0f} s; see {services.folder / 'mlflow.log'}"
    )


def start(services: Services) -> Services:
    "Start PostgreSQL (initialising its cluster the first time) and the MLflow server on it; both stay up until `stop`."
    services.folder.mkdir(parents=True, exist_ok=True)
    services.ports_file.write_text(f"pg={services.pg_port}\nmlflow={services.mlflow_port}\n")
    _start_postgres(services)
    _start_mlflow(services)
    return services


def stop(services: Services):
    "Stop the MLflow server (its whole process group) and PostgreSQL; the data stays for the next `start`."
    pid = _pid(services.mlflow_pid)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(60):
            if _pid(services.mlflow_pid) is None:
                break
            time.sleep(0.25)
        else:
            os.killpg(pid, signal.SIGKILL)
    services.mlflow_pid.unlink(missing_ok=True)
    if _pg_running(services):
        _run(_as_server_user([_pg_program("pg_ctl"), "-D", str(services.data), "-m", "fast", "-w", "stop"]))


def status(services: Services) -> dict[str, bool]:
    "Whether each service answers."
    return {
        "postgresql": _pg_running(services),
        "mlflow": bool(_pid(services.mlflow_pid)) and _healthy(services.tracking_uri),
    }


def describe(services: Services) -> str:
    "What to point the project at, as a user types it."
    return (
        f"PostgreSQL on 127.0.0.1:{services.pg_port} (cluster {services.data}, password in {services.password_file})\n"
        f"MLflow on {services.tracking_uri} (artefacts in {services.folder / 'mlartifacts'})\n\n"
        "Point this shell (or settings.ini's keys of the same names) at them:\n"
        f"  export ML_PROJECT_MLFLOW_TRACKING_URI={services.tracking_uri}\n"
        f"  export ML_PROJECT_OPTUNA_STORAGE={services.database_url('optuna')}\n"
    )
