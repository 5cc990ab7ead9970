"""The production stack on one machine: API replicas behind HAProxy, Prometheus on every replica (deploy/compose.yaml).

    ml-project stack up --model churn [--port 8088]      # make stack: builds what is missing, then starts it
    ml-project stack down                                # make stack-down: stops it; its volumes stay
    ml-project stack status                              # what runs, and which replicas the balancer sends to

`up` builds the champion's image when the engine does not have it (`ml_project.deploy.image`), writes the stack's
keys under `secrets/stack/` the first time (a client key, printed once and kept in `client.key`, and Prometheus'
key, both with the `predict` role; the replicas get only their hashes), and runs `podman-compose` (or
`docker compose`) on deploy/compose.yaml with the image, the base and the ports as environment. The compose file is
the deployable description: anything that runs compose files runs it the same way.

A plain module, not a notebook: it drives a compose tool, with nothing to explore; tests/test_stack.py starts a
stack, spreads requests over it, kills a replica under load and watches Prometheus' alert fire.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import subprocess
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
    "PROJECT", "REPLICAS", "Stack", "compose", "model_label", "replica_states", "stack_down", "stack_keys",
    "stack_status", "stack_up",
]  # fmt: skip

PROJECT = "ml-project"  # the compose project's name: its containers, network and volumes start with it
REPLICAS = ("api-1", "api-2")


@dataclass
class Stack:
    "A running stack: where it answers on the host, with which image and which client key."

    url: str  # the balancer, http://127.0.0.1:<port>
    prometheus: str  # http://127.0.0.1:<port>
    stats: str  # HAProxy's stats page, http://127.0.0.1:<port>/stats
    image: str
    key_file: Path  # secrets/stack/client.key: the key clients send


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
    "The stack's keys file (hashes only), made with a client key and Prometheus' key the first time; its path."
    keys = folder / "api_keys"
    if not keys.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        for name in ("client", "prometheus"):
            (folder / f"{name}.key").write_text(add_api_key(keys, f"stack-{name}", ["predict"]) + "\n")
        # The containers' users read these bind-mounted files: the folder (0700) keeps other users of this host out
        for f in ("api_keys", "client.key", "prometheus.key"):
            (folder / f).chmod(0o644)
    return keys


def _environment(settings: Settings, image: str, base: str, port: int, prometheus_port: int, stats_port: int = 0):
    return {**os.environ, "ML_PROJECT_IMAGE": image, "ML_PROJECT_BASE": base,
            "ML_PROJECT_STACK_PORT": str(port), "ML_PROJECT_PROMETHEUS_PORT": str(prometheus_port),
            "ML_PROJECT_LB_STATS_PORT": str(stats_port),
            "ML_PROJECT_STACK_SECRETS": str(settings.root / "secrets" / "stack")}  # fmt: skip


def _run_compose(settings: Settings, engine: str | None, env: dict, name: str, *args: str) -> str:
    command = [*compose(engine), "-p", name, "-f", str(source_tree(settings) / "deploy" / "compose.yaml"), *args]
    return _run(command, f"compose {args[0]}", env=env).stdout


def _image_for(model: str, settings: Settings, engine: str, base: str | None, repository: str) -> str:
    "The image of `model` (its champion's version now): one the engine has, if its model's hash is this one's; else built."
    folder, info = fetch_model(parse_model_ref(model, settings), settings)
    if info["version"]:
        tag = image_tag(info["name"], info["version"], repository=repository)
        sha256 = verify_model(folder, settings)[1]["sha256"]
        if image_exists(tag, engine) and model_label(tag, engine) == sha256:  # not another registry's `churn:3`
            return tag
    return build_image(prepare_context(model, settings, repository=repository), base, engine)


def model_label(tag: str, engine: str) -> str:
    "The hash of the model an image holds (its `io.ml-project.model.sha256` label); empty if none."
    done = subprocess.run([engine, "image", "inspect", "--format", '{{index .Labels "io.ml-project.model.sha256"}}',
                           tag], capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else ""


def replica_states(stats: str) -> dict[str, str]:
    "Each replica's state as the balancer sees it (`UP`, `DOWN`, `MAINT`...), from its stats page's CSV."
    with urllib.request.urlopen(f"{stats};csv", timeout=5) as answer:
        rows = list(csv.DictReader(line.lstrip("# ") for line in answer.read().decode().splitlines()))
    return {r["svname"]: r["status"] for r in rows if r["pxname"] == "replicas" and r["svname"] in REPLICAS}


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
) -> Stack:
    "Start the stack with `model`'s image; return once the balancer sends to every replica."
    engine = container_engine(engine)
    base = base or build_base_image(engine)  # made once with mmdebstrap, kept
    image = _image_for(model, settings, engine, base, repository)
    keys = stack_keys(settings.root / "secrets" / "stack")
    env = _environment(settings, image, base, port, prometheus_port, stats_port)
    log.info("starting the stack: %s x%d behind HAProxy on 127.0.0.1:%d", image, len(REPLICAS), port)
    _run_compose(settings, engine, env, name, "up", "-d")
    stats = f"http://127.0.0.1:{stats_port}/stats"
    deadline, states = time.monotonic() + 120, {}
    while states != dict.fromkeys(REPLICAS, "UP"):
        if time.monotonic() > deadline:
            raise ServiceError(f"the balancer does not see every replica up within 120 s: {states or 'no answer'}")
        time.sleep(0.5)
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):  # the balancer still starting
            states = replica_states(stats)
    return Stack(url=f"http://127.0.0.1:{port}", prometheus=f"http://127.0.0.1:{prometheus_port}", stats=stats,
                 image=image, key_file=keys.parent / "client.key")  # fmt: skip


def stack_down(
    settings: Settings,
    engine: str | None = None,
    volumes: bool = False,  # also remove the prediction log and Prometheus' data
    name: str = PROJECT,
):
    "Stop and remove the stack's containers and network (and its volumes if asked)."
    env = _environment(settings, "unused", BASE_IMAGE, 0, 0)  # compose reads the whole file, which names an image
    _run_compose(settings, engine, env, name, "down", *(["-v"] if volumes else []))
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
