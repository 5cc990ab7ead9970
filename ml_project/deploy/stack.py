"""The production stack on one machine: API replicas behind HAProxy, Prometheus on every replica (deploy/compose.yaml).

    ml-project stack up --model churn [--port 8088]      # make stack: builds what is missing, then starts it
    ml-project stack down                                # make stack-down: stops it; its volumes stay
    ml-project stack status                              # what runs, and which replicas the balancer sends to

The replicas come in two slots, blue and green (`replicas(slot)`): `up` starts blue; a release
(`ml_project.deploy.release`) starts the other slot and moves traffic to it with `haproxy_command`. What the stack
is running is in `secrets/stack/live/` (`read_state`, `write_live`): `stack.json` (ports, the live slot, each slot's
image and model, the releases), `live.map` (the balancer's `live <slot>`) and `targets.json` (Prometheus' replicas).

`up` builds the champion's image when the engine does not have it (`ml_project.deploy.image`), writes the stack's
keys under `secrets/stack/` the first time (a client key, printed once and kept in `client.key`, and Prometheus'
key, both with the `predict` role; the replicas get only their hashes), and runs `podman-compose` (or
`docker compose`) on deploy/compose.yaml with the image, the base and the ports as environment. The compose file is
the deployable description: anything that runs compose files runs it the same way.

A plain module, not a notebook: it drives a compose tool, with nothing to explore; tests/test_stack.py starts a
stack, spreads requests over it, kills a replica under load and watches Prometheus' alert fire; tests/test_release.py
releases onto one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ml_project.deploy.image import (
    BASE_IMAGE,
    _run,
    build_base_image,
    build_image,
    container_engine,
    download_wheels,
    image_exists,
    image_tag,
    prepare_context,
    source_tree,
)
from ml_project.errors import ServiceError
from ml_project.serve.keys import add_api_key
from ml_project.settings import Settings
from ml_project.train.files import verify_model
from ml_project.train.registry import fetch_model, parse_model_ref

log = logging.getLogger(__name__)

__all__ = [
    "PROJECT", "SLOTS", "Stack", "compose", "containers", "haproxy_command", "image_for", "model_label",
    "prediction_log", "read_state",
    "replica_states", "replicas", "stack_down", "stack_keys", "stack_status", "stack_up", "start_slot", "stop_slot", "tracking_image",
    "wait_slot", "write_live",
]  # fmt: skip

PROJECT = "ml-project"  # the compose project's name: its containers, network and volumes start with it
SLOTS = ("blue", "green")  # the two slots of replicas: one live, the other for the next release (blue/green)


def replicas(
    slot: str,  # blue or green
) -> tuple[str, str]:
    "The compose services (and HAProxy servers) of one slot: `api-<slot>-1`, `api-<slot>-2`."
    return f"api-{slot}-1", f"api-{slot}-2"


@dataclass
class Stack:
    "A running stack: where it answers on the host, with which image and which client key."

    url: str  # the balancer, http://127.0.0.1:<port>
    prometheus: str  # http://127.0.0.1:<port>
    stats: str  # HAProxy's stats page, http://127.0.0.1:<port>/stats
    image: str
    key_file: Path  # secrets/stack/client.key: the key clients send
    live: str = "blue"  # the slot taking traffic
    mlflow: str = ""  # the stack's MLflow server, http://127.0.0.1:<port>


def compose(
    engine: str | None = None,  # podman or docker
) -> list[str]:
    "The compose command for the engine: podman-compose, or docker compose."
    engine = container_engine(engine)
    if engine == "podman":
        if not shutil.which("podman-compose"):
            raise ServiceError("podman-compose is not installed (Debian: apt-get install podman-compose)")
        return ["podman-compose"]
    return ["docker", "compose"]


def stack_keys(
    folder: Path,  # secrets/stack/ at the project root
) -> Path:
    "The stack's keys file (hashes only), made with a client key and Prometheus' key the first time, and PostgreSQL's password; the keys file's path."
    keys = folder / "api_keys"
    if not keys.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        for name in ("client", "prometheus"):
            (folder / f"{name}.key").write_text(add_api_key(keys, f"stack-{name}", ["predict"]) + "\n")
    password = folder / "postgres.password"
    if not password.is_file():  # the stack's PostgreSQL, made on its first start with it
        password.write_text(secrets.token_urlsafe(24) + "\n")
    # The containers' users read these bind-mounted files: the folder (0700) keeps other users of this host out
    for f in ("api_keys", "client.key", "prometheus.key", "postgres.password"):
        (folder / f).chmod(0o644)
    return keys


def _live_folder(settings: Settings) -> Path:
    return settings.root / "secrets" / "stack" / "live"


def read_state(
    settings: Settings,  # the project root
) -> dict:
    "The stack's state as `stack up` and releases leave it (secrets/stack/live/stack.json): ports, the live slot, each slot's image and model, the releases; empty when none was started."
    path = _live_folder(settings) / "stack.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, text: str):
    "Replaced whole (a reader never sees half a file), readable by the balancer's and Prometheus' users."
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def write_live(
    settings: Settings,  # the project root
    state: dict,  # what `read_state` reads: `live` names the slot taking traffic
    scraped: tuple[str, ...] | None = None,  # the slots Prometheus scrapes (default: the live one)
):
    "Write the state, the balancer's map (`live <slot>`: read when it starts) and Prometheus' targets."
    folder = _live_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # mounted as a folder: the containers' users list it (nothing in it is secret)
    targets = [{"targets": [f"{r}:8080" for r in replicas(slot)], "labels": {"slot": slot}}
               for slot in (scraped or (state["live"],))]  # fmt: skip
    _write(folder / "targets.json", json.dumps(targets, indent=1))
    _write(folder / "live.map", f"live {state['live']}\n")
    _write(folder / "stack.json", json.dumps(state, indent=1))


def _environment(settings: Settings, state: dict) -> dict:
    images = {slot: (state.get(slot) or {}).get("image") for slot in SLOTS}
    idle = images[state["live"]] if state.get("live") else "unused"  # compose reads the whole file: each slot names one
    return {**os.environ, "ML_PROJECT_BASE": state.get("base", BASE_IMAGE),
            **{f"ML_PROJECT_IMAGE_{slot.upper()}": images[slot] or idle for slot in SLOTS},
            "ML_PROJECT_STACK_PORT": str(state.get("port", 0)),
            "ML_PROJECT_PROMETHEUS_PORT": str(state.get("prometheus_port", 0)),
            "ML_PROJECT_LB_STATS_PORT": str(state.get("stats_port", 0)),
            "ML_PROJECT_STACK_MLFLOW_PORT": str(state.get("mlflow_port", 0)),
            "ML_PROJECT_MLFLOW_IMAGE": state.get("mlflow_image", "unused"),
            "ML_PROJECT_STACK_SECRETS": str(settings.root / "secrets" / "stack"),
            "ML_PROJECT_STACK_LIVE": str(_live_folder(settings))}  # fmt: skip


def _run_compose(settings: Settings, engine: str | None, state: dict, name: str, *args: str) -> str:
    command = [*compose(engine), "-p", name, "-f", str(source_tree(settings) / "deploy" / "compose.yaml"), *args]
    return _run(command, f"compose {args[0]}", env=_environment(settings, state)).stdout


def _check_started(engine: str, name: str, services: list[str]):
    """A clear error naming each service whose container the engine created but could not start, with the engine's
    reason: podman-compose goes on past one, which would otherwise show only as a replica the balancer never sees."""
    engine = container_engine(engine)
    failed = []
    for service in services:
        for found in containers(engine, name, service):
            state = subprocess.run([engine, "inspect", "--format", "{{.State.Status}}", found], capture_output=True,
                                   text=True).stdout.strip()  # fmt: skip
            if state == "created":  # never started: starting it again says why
                again = subprocess.run([engine, "start", found], capture_output=True, text=True)
                if again.returncode != 0:
                    failed.append(f"{service}: {(again.stderr or again.stdout).strip().splitlines()[-1][:300]}")
    if failed:
        raise ServiceError(f"the container engine could not start {'; '.join(failed)}")


def start_slot(
    settings: Settings,  # the project root
    state: dict,  # the stack's state, with the slot's image in `state[slot]["image"]`
    slot: str,  # blue or green
    engine: str | None = None,
    name: str = PROJECT,
):
    "Start one slot's replicas (any old containers of theirs are removed first: a slot runs exactly its image)."
    engine = container_engine(engine)
    for service in replicas(slot):
        found = containers(engine, name, service)
        if found:
            subprocess.run([engine, "rm", "-f", *found], capture_output=True)
    _run_compose(settings, engine, state, name, "up", "-d", *replicas(slot))
    _check_started(engine, name, replicas(slot))


def stop_slot(
    engine: str,
    slot: str,  # blue or green
    name: str = PROJECT,
    timeout: int = 35,  # seconds of SIGTERM (the service drains what it has in flight) before SIGKILL
):
    "Stop one slot's replicas, draining them; their containers stay, so a rollback can start them again."
    found = [c for service in replicas(slot) for c in containers(engine, name, service)]
    if found:
        _run([engine, "stop", "-t", str(timeout), *found], f"{engine} stop")


def containers(
    engine: str,
    name: str,  # the compose project
    service: str,  # one of its services
) -> list[str]:
    "The IDs of a compose service's containers, running or not (by the labels both podman-compose and docker compose set)."
    done = subprocess.run([engine, "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={name}",
                           "--filter", f"label=com.docker.compose.service={service}"],
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout.split() if done.returncode == 0 else []


def haproxy_command(
    engine: str,
    command: str,  # a command of HAProxy's runtime API, e.g. `set map /etc/haproxy/live/live.map live green`
    name: str = PROJECT,
) -> str:
    "Run a command on the balancer's admin socket (inside its container, reached through the engine); its answer."
    found = containers(engine, name, "lb")
    if not found:
        raise ServiceError(f"the stack {name!r} has no balancer running: start it with `ml-project stack up`")
    done = subprocess.run([engine, "exec", "-i", found[0], "socat", "stdio", "/run/haproxy/admin.sock"],
                          input=command + "\n", capture_output=True, text=True, timeout=30)  # fmt: skip
    if done.returncode != 0:
        raise ServiceError(f"the balancer's admin socket refused {command!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def image_for(
    model: str,  # `churn` (its champion), `churn:3`, or a folder
    settings: Settings,  # the tracking URI, models/
    engine: str,
    base: str | None,  # the base image, if it must be built
    repository: str = "ml-project",  # the image's repository (`image_tag`)
) -> tuple[str, dict]:
    "The image of `model` (its champion's version now): one the engine has, if its label holds this model's hash, else built; and the model's {name, version, sha256}."
    folder, info = fetch_model(parse_model_ref(model, settings), settings)
    sha256 = verify_model(folder, settings)[1]["sha256"]
    found = {"name": info["name"] or folder.name, "version": info["version"], "sha256": sha256}
    if info["version"]:
        tag = image_tag(info["name"], info["version"], repository=repository)
        if image_exists(tag, engine) and model_label(tag, engine) == sha256:  # not another registry's `churn:3`
            return tag, found
    return build_image(prepare_context(model, settings, repository=repository), base, engine), found


def tracking_image(
    settings: Settings,  # the project root (the lock, the build folder)
    engine: str,
    base: str,  # the base image
) -> str:
    "The stack's MLflow server image, `ml-project/mlflow:<version>` (requirements-tracking.lock's): built from local wheels when the engine does not have it."
    root = source_tree(settings)
    lock = root / "requirements-tracking.lock"
    version = next((line.split("==")[1].strip() for line in lock.read_text().splitlines()
                    if line.startswith("mlflow==")), "")  # fmt: skip
    tag = f"ml-project/mlflow:{version}"
    if image_exists(tag, engine):
        return tag
    folder = settings.root / "build" / "stack" / "mlflow"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(root / "deploy" / "stack" / "mlflow", folder)
    log.info("building %s (the stack's tracking server; its wheels first, with the host's pip)", tag)
    download_wheels(folder / "wheels", lock, root)
    formats = ["--format", "docker"] if engine == "podman" else []
    _run([engine, "build", *formats, "--build-arg", f"BASE={base}", "-t", tag, "."], f"{engine} build",
         cwd=folder)  # fmt: skip
    return tag


def model_label(tag: str, engine: str) -> str:
    "The hash of the model an image holds (its `io.ml-project.model.sha256` label); empty if none."
    done = subprocess.run([engine, "image", "inspect", "--format", '{{index .Labels "io.ml-project.model.sha256"}}',
                           tag], capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else ""


def replica_states(stats: str) -> dict[str, str]:
    "Each replica's state as the balancer sees it (`UP`, `DOWN`, `MAINT`...), from its stats page's CSV."
    with urllib.request.urlopen(f"{stats};csv", timeout=5) as answer:
        rows = list(csv.DictReader(line.lstrip("# ") for line in answer.read().decode().splitlines()))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] in SLOTS and r["svname"].startswith("api-")}


def wait_slot(
    stats: str,  # the balancer's stats page
    slot: str,  # blue or green
    timeout: float = 120,  # seconds
    state: str = "UP",  # what every replica of the slot should be
):
    "Return once the balancer sees every replica of `slot` in `state`; a clear error naming what it sees otherwise."
    deadline, seen = time.monotonic() + timeout, {}
    while True:
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):  # the balancer still starting
            seen = {k: v for k, v in replica_states(stats).items() if k in replicas(slot)}
        if seen and all(v == state for v in seen.values()) and len(seen) == len(replicas(slot)):
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"the balancer does not see the {slot} replicas {state} within {timeout:.0f} s: "
                               f"{seen or 'no answer'}")  # fmt: skip
        time.sleep(0.5)


def stack_up(
    model: str,  # `churn` (its champion), `churn:3`, or a folder
    settings: Settings,
    port: int = 8088,  # the balancer on 127.0.0.1
    prometheus_port: int = 9090,  # Prometheus on 127.0.0.1
    stats_port: int = 8404,  # HAProxy's stats page on 127.0.0.1
    engine: str | None = None,
    base: str | None = None,  # the base image (default: the Debian one `ml-project image base` makes)
    name: str = PROJECT,  # the compose project: its containers are <name>_<service>_1
    repository: str = "ml-project",  # the image's repository (`image_tag`)
    mlflow_port: int = 5055,  # the stack's MLflow server on 127.0.0.1
) -> Stack:
    "Start the stack with `model`'s image in the blue slot; return once the balancer sends to every replica."
    engine = container_engine(engine)
    if any(state == "running" for state in stack_status(settings, engine, name).values()):
        raise ServiceError(f"the stack {name!r} is already up: `ml-project release` changes its model, "
                           "`ml-project stack down` stops it")  # fmt: skip
    _ports_free({"the balancer": port, "Prometheus": prometheus_port, "the balancer's stats page": stats_port,
                 "the MLflow server": mlflow_port})  # fmt: skip
    base = base or build_base_image(engine)  # made once with mmdebstrap, kept
    image, model_info = image_for(model, settings, engine, base, repository)
    keys = stack_keys(settings.root / "secrets" / "stack")
    state = {"name": name, "engine": engine, "base": base, "repository": repository, "port": port,
             "prometheus_port": prometheus_port, "stats_port": stats_port, "mlflow_port": mlflow_port,
             "mlflow_image": tracking_image(settings, engine, base), "live": "blue",
             "blue": {"image": image, "model": model_info}, "green": None, "releases": []}  # fmt: skip
    write_live(settings, state)
    log.info("starting the stack: %s x%d behind HAProxy on 127.0.0.1:%d", image, len(replicas("blue")), port)
    services = [*replicas("blue"), "lb", "prometheus", "postgres", "mlflow"]
    _run_compose(settings, engine, state, name, "up", "-d", *services)
    _check_started(engine, name, services)
    stats = f"http://127.0.0.1:{stats_port}/stats"
    wait_slot(stats, "blue")
    mlflow = f"http://127.0.0.1:{mlflow_port}"
    _wait_answer(f"{mlflow}/health", 120, "the stack's MLflow server")
    return Stack(url=f"http://127.0.0.1:{port}", prometheus=f"http://127.0.0.1:{prometheus_port}", stats=stats,
                 image=image, key_file=keys.parent / "client.key", mlflow=mlflow)  # fmt: skip


def _ports_free(ports: dict[str, int]):
    "A clear error naming the port, before anything starts: a container whose port is taken is left `created`, and a"
    "health check would be answered by whatever holds the port."
    for what, port in ports.items():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise ServiceError(f"port {port} on 127.0.0.1 (for {what}) is in use: stop what holds it, or choose "
                                   "another with the matching `ml-project stack up` option") from None  # fmt: skip


def _wait_answer(url: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} does not answer on {url} within {timeout:.0f} s")
        time.sleep(0.5)


@contextlib.contextmanager
def prediction_log(
    settings: Settings,  # the project root (the stack's state)
    name: str | None = None,  # the compose project (default: the one `stack up` started)
):
    "Every replica's prediction log, read from the stack's shared volume into a private temporary folder for the block (`ml-project monitor --stack`); removed after."
    state = read_state(settings)
    name = name or state.get("name", PROJECT)
    engine = container_engine(state.get("engine"))
    image = (state.get(state.get("live") or "") or {}).get("image")
    if not image:
        raise ServiceError("no stack has been started here: `ml-project stack up` first (make stack)")
    with tempfile.TemporaryDirectory(prefix="ml-project-log-") as tmp:  # 0700: the log holds the requests' inputs
        # A one-off container of the live image copies the volume's log out: no network, the volume read-only. Its
        # root is this user under rootless podman; under docker it is the host's root, so the copy is handed back
        copy = "if [ -d /var/lib/ml-project/predictions ]; then cp -r /var/lib/ml-project/predictions /copy/; fi"
        if engine != "podman":
            copy += f" && chown -R {os.getuid()}:{os.getgid()} /copy"
        _run([engine, "run", "--rm", "--network", "none", "--user", "0:0", "--read-only",
              "-v", f"{name}_predictions:/var/lib/ml-project:ro", "-v", f"{tmp}:/copy", "--entrypoint", "sh", image,
              "-c", copy], "copying the stack's prediction log")  # fmt: skip
        folder = Path(tmp) / "predictions"
        folder.mkdir(exist_ok=True)
        yield folder


def stack_down(
    settings: Settings,
    engine: str | None = None,
    volumes: bool = False,  # also remove the prediction log and Prometheus' data
    name: str = PROJECT,
):
    "Stop and remove the stack's containers and network (and its volumes if asked)."
    _run_compose(settings, engine, {"live": None}, name, "down", *(["-v"] if volumes else []))
    engine = container_engine(engine)
    subprocess.run([engine, "network", "rm", f"{name}_stack"], capture_output=True)  # podman-compose 1.0 leaves it


def stack_status(
    settings: Settings,
    engine: str | None = None,
    name: str = PROJECT,
) -> dict[str, str]:
    "Each of the stack's containers and its state (`running`, `exited`...); empty when it is not up."
    engine = container_engine(engine)
    done = subprocess.run([engine, "ps", "-a", "--filter", f"label=com.docker.compose.project={name}",
                           "--format", "json"], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        return {}
    found = json.loads(done.stdout)
    return {(c["Names"][0] if isinstance(c["Names"], list) else c["Names"]): c["State"] for c in found}
