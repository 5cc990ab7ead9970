"""The prediction service as a container image: its build context, its base, the build, and the warm-up inside it.

    ml-project image build --model churn [--base IMAGE] [--engine podman|docker]   # make image MODEL=churn
    ml-project image base                                                          # make base-image

`build` writes a build context under `build/image/<name>-v<version>/` and builds `deploy/Containerfile` in it: the
package's wheel, pip's wheel and every wheel of the serving lock (downloaded by the host's pip, with the host's index
configuration, so the build itself reaches no index), and the model's files, verified against the hash the registry
recorded before they are copied. The serving lock is `requirements-serve.lock`; a model whose family is a network
(`mlp`, alone or in a blend) gets `requirements-serve-torch.lock`, which adds torch and skorch. That is read from the
model's metadata (its config), never by loading the model. Without `--model` the image holds no model and fetches one
from the tracking server when it starts (`ML_PROJECT_SERVE_MODEL`, `ML_PROJECT_MLFLOW_TRACKING_URI`): it gets
`requirements-serve-fetch.lock`, with torch (the model may be any family) and MLflow's client.

The base is a build argument (`python:3.11-slim` by default, as most users build on). Where no registry is reachable,
`base` makes one from Debian's packages with mmdebstrap (bookworm, minbase, python3 and CA certificates) and keeps it in
the engine's image store; `build` makes it the first time it is asked for it.

A plain module, not a notebook: it drives podman, docker and mmdebstrap, with nothing to explore; tests/test_image.py
builds, runs and tampers with a real image.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ml_project.errors import ConfigError, ServiceError
from ml_project.settings import Settings
from ml_project.train.files import verify_model
from ml_project.train.registry import fetch_model, parse_model_ref

log = logging.getLogger(__name__)

__all__ = [
    "BASE_IMAGE",
    "Container",
    "DEFAULT_BASE",
    "ImageContext",
    "build_base_image",
    "build_image",
    "container_engine",
    "image_exists",
    "image_size",
    "image_tag",
    "model_families",
    "prepare_context",
    "run_container",
    "serving_lock",
    "source_tree",
    "wait_ready",
    "warm_up",
]

DEFAULT_BASE = "python:3.11-slim"  # the Containerfile's own default, for a machine that reaches a registry
BASE_IMAGE = "localhost/ml-project-base:bookworm"  # what `build_base_image` makes where none is reachable
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"  # Debian 12: its python3 is 3.11, the version the lock is resolved for
IMAGE_MODELS = "/app/models"  # where the image keeps a baked-in model (the Containerfile's MODELS_DIR)
FETCHED_MODELS = "/var/lib/ml-project/models"  # where an image without one keeps what it fetches (a volume)
MODEL_FILES = ("model.joblib", "metadata.json", "splits.json", "reference.json", "reference.parquet")


def container_engine(
    engine: str | None = None,  # `podman` or `docker`; default: podman if installed, else docker
) -> str:
    "The container engine to build and run with, checked to be installed."
    engine = engine or os.environ.get("ML_PROJECT_ENGINE") or ("podman" if shutil.which("podman") else "docker")
    if engine not in ("podman", "docker"):
        raise ConfigError(f"container engine {engine!r}: use podman or docker")
    if not shutil.which(engine):
        raise ServiceError(f"{engine} is not installed (Debian: apt-get install podman runc; or install Docker)")
    return engine


def image_exists(tag: str, engine: str) -> bool:
    "Whether the engine's image store holds `tag`."
    return subprocess.run([engine, "image", "inspect", tag], capture_output=True).returncode == 0


def model_families(
    metadata: dict,  # a saved model's metadata.json
) -> set[str]:
    "The model families a saved model is made of: its config's model type, or a blend's members' families."
    model = metadata.get("config", {}).get("model", {})
    if model.get("type") == "ensemble":
        return {member["family"] for member in model.get("params", {}).get("members", [])}
    return {model["type"]} if model.get("type") else set()


def serving_lock(
    metadata: dict | None,  # the model's metadata; None for an image that fetches its model at start
    root: Path,  # the project root, where the locks are
) -> Path:
    "The serving lock a model needs: the plain one; with torch for a network (or a blend holding one); everything, MLflow's client too, for an image that fetches its model."
    if metadata is None:
        name = "requirements-serve-fetch.lock"  # the model is known only when it starts: it may be any family
    else:
        name = "requirements-serve-torch.lock" if "mlp" in model_families(metadata) else "requirements-serve.lock"
    lock = root / name
    if not lock.is_file():
        raise ConfigError(f"{lock} is missing: run 'make lock' (deploy/serve_lock.py writes it)")
    return lock


def image_tag(
    name: str,  # the model's registered name (or its folder's)
    version: str | None,  # its registry version; None for a folder outside the registry
    sha256: str = "",  # the model file's hash: tags a folder's model, which has no version
    repository: str = "ml-project",  # where the image is to be pushed, e.g. registry.example.com/team/ml-project
) -> str:
    "`<repository>/<name>:<version>` (a folder's model: `:sha-<first 12 of its hash>`)."
    return f"{repository}/{name.lower()}:{version if version else 'sha-' + sha256[:12]}"


@dataclass
class ImageContext:
    "A build context written by `prepare_context`: the folder to build in, the tag, the build arguments."

    folder: Path  # build/image/<name>-v<version>/
    tag: str  # ml-project/<name>:<version>
    lock: Path  # the serving lock it installs
    model: dict = field(default_factory=dict)  # name, version, sha256 of the baked-in model (empty: fetched at start)
    build_args: dict[str, str] = field(default_factory=dict)


def source_tree(settings: Settings) -> Path:
    "The checkout the image is built from (deploy/Containerfile, the locks, the package): the project root, or the package's."
    for root in (settings.root, Path(__file__).resolve().parents[2]):
        if (root / "deploy" / "Containerfile").is_file() and (root / "pyproject.toml").is_file():
            return root
    raise ConfigError(f"no deploy/Containerfile in {settings.root}: build the image from a checkout of the project")


def _revision(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def _pip(*args: str, cwd: Path):
    "The host's pip (its index configuration, its cache), quiet unless it fails."
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise ServiceError(f"pip {args[0]} failed:\n{done.stderr.strip()[-2000:]}")


def download_wheels(
    folder: Path,  # where the wheels go (made if missing)
    lock: Path,  # a lock file: every line pinned
    root: Path,  # the project root (pip runs there)
):
    "Every wheel of `lock` and pip's own, with the host's pip (its index settings), and the lock as requirements.lock: a build context's wheels/, so the build reaches no index."
    folder.mkdir(parents=True, exist_ok=True)
    pip_version = importlib.import_module("pip").__version__
    _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "-r", str(lock), f"pip=={pip_version}",
         "-d", str(folder), cwd=root)  # fmt: skip
    shutil.copy(lock, folder / "requirements.lock")


def _wheels(folder: Path, lock: Path, root: Path):
    "The serving lock's wheels, pip's own wheel and the package's wheel, in `folder`."
    folder.mkdir(parents=True)
    download_wheels(folder, lock, root)
    for stale in ("lib", f"bdist.{sys.platform}"):  # setuptools reuses build/lib: a deleted module would come back
        shutil.rmtree(root / "build" / stale, ignore_errors=True)
    _pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", str(root), "-w", str(folder), cwd=root)


def _model_files(model: str, settings: Settings, into: Path) -> dict:
    "Copy the verified files of `model` into `into`/registry/<name>/v<version>/; return its name, version and hash."
    ref = parse_model_ref(model, settings)
    folder, info = fetch_model(ref, settings)  # a registry model: downloaded, its file checked against the registry
    folder, metadata = verify_model(folder, settings)  # and against its own metadata, with nothing deserialised
    name = info["name"] or folder.name
    version = info["version"]
    target = into / "registry" / name / f"v{version}" if version else into / name
    target.mkdir(parents=True)
    for f in MODEL_FILES:
        if (folder / f).is_file():
            shutil.copyfile(folder / f, target / f)
            (target / f).chmod(0o644)  # owned by root in the image, readable by the service's user, writable by none
    for d in (target, *target.parents):
        if d == into.parent:
            break
        d.chmod(0o755)
    verify_model(target, dataclasses.replace(settings, models_dir=into))  # the copy is what was verified
    return {"name": name, "version": version, "sha256": metadata["sha256"], "metadata": metadata,
            "path": str(target.relative_to(into))}  # fmt: skip


def prepare_context(
    model: str | None,  # `churn` (its champion), `churn:3`, a folder under models/; None: fetched when it starts
    settings: Settings,  # the project root, models/ and the tracking URI
    folder: Path | None = None,  # where to write it (default: build/image/<name>-<version>/ at the root)
    repository: str = "ml-project",  # the tag's repository (`image_tag`)
) -> ImageContext:
    "A build context for deploy/Containerfile: wheels, the serving lock, the model's verified files."
    root = source_tree(settings)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        found = _model_files(model, settings, staging) if model else {}
        lock = serving_lock(found.get("metadata"), root)
        name = found.get("name", "service")
        version = found.get("version") or (None if found else _package_version())
        tag = image_tag(name, version, found.get("sha256", ""), repository)
        folder = folder or settings.root / "build" / "image" / tag.rsplit("/", 1)[1].replace(":", "-")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.move(staging, folder / "model")
    _wheels(folder / "wheels", lock, root)
    shutil.copy(root / "deploy" / "Containerfile", folder / "Containerfile")
    args = {"REVISION": _revision(root)}
    if found:
        args |= {"MODEL_NAME": name, "MODEL_VERSION": found["version"] or "", "MODEL_SHA256": found["sha256"],
                 "MODEL_PATH": f"{IMAGE_MODELS}/{found['path']}"}  # fmt: skip
    else:
        args["MODELS_DIR"] = FETCHED_MODELS
    model_info = {k: found[k] for k in ("name", "version", "sha256")} if found else {}
    (folder / "image.json").write_text(
        json.dumps({"tag": tag, "lock": lock.name, "model": model_info, "build_args": args}, indent=2)
    )  # what was built and how: `podman build --build-arg K=V ...` by hand gives the same image
    return ImageContext(folder=folder, tag=tag, lock=lock, model=model_info, build_args=args)


def _package_version() -> str:
    from ml_project import __version__

    return __version__


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-3000:]
        raise ServiceError(f"{what} failed ({' '.join(command[:3])} ... exit {done.returncode}):\n{output}")
    return done


def build_base_image(
    engine: str | None = None,  # podman or docker (default: `container_engine()`)
    tag: str = BASE_IMAGE,
    mirror: str = DEBIAN_MIRROR,  # a Debian mirror (default: deb.debian.org)
    rebuild: bool = False,  # make it again even if the image store has it (e.g. for security updates)
) -> str:
    "Debian bookworm (minbase) with python3 and CA certificates, made with mmdebstrap and imported as `tag`."
    engine = container_engine(engine)
    if image_exists(tag, engine) and not rebuild:
        return tag
    if not shutil.which("mmdebstrap"):
        raise ServiceError("mmdebstrap is not installed (Debian: apt-get install mmdebstrap), or pass a base image")
    sources = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main",
               f"deb {mirror.replace('/debian', '/debian-security')} {SUITE}-security main"]  # fmt: skip
    slim = [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "info", "doc", "locale")]
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "base.tar"
        log.info("making the base image %s with mmdebstrap (about 30 s, 125 MB; kept for later builds)", tag)
        _run(["mmdebstrap", "--variant=minbase", "--include=python3,ca-certificates", *slim,
              "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",  # merged /usr without usrmerge, which pulls perl
              "--dpkgopt=path-include=/usr/share/doc/*/copyright",
              "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*",
              SUITE, str(tar), *sources], "mmdebstrap")  # fmt: skip
        _run([engine, "import", "--change", 'CMD ["/usr/bin/python3"]', str(tar), tag], f"{engine} import")
    return tag


def build_image(
    context: ImageContext,  # what `prepare_context` wrote
    base: str | None = None,  # the base image (default: BASE_IMAGE, made with mmdebstrap when missing)
    engine: str | None = None,  # podman or docker
) -> str:
    "Build the image in `context` and tag it; return the tag."
    engine = container_engine(engine)
    base = base or build_base_image(engine)
    args = [a for k, v in {"BASE": base, **context.build_args}.items() for a in ("--build-arg", f"{k}={v}")]
    formats = ["--format", "docker"] if engine == "podman" else []  # podman keeps HEALTHCHECK in docker's format only
    log.info("building %s on %s (%s)", context.tag, base, context.lock.name)
    _run([engine, "build", *formats, *args, "-t", context.tag, "-f", "Containerfile", "."], f"{engine} build",
         cwd=context.folder)  # fmt: skip
    return context.tag


def image_size(tag: str, engine: str) -> int:
    "The image's size in bytes, as the engine reports it."
    done = _run([engine, "image", "inspect", "--format", "{{.Size}}", tag], f"{engine} image inspect")
    return int(done.stdout.strip())


@dataclass
class Container:
    "A container started by `run_container`: its name, its engine, where it answers on 127.0.0.1."

    name: str
    engine: str
    url: str  # http://127.0.0.1:<port>

    def logs(self) -> str:
        done = subprocess.run([self.engine, "logs", self.name], capture_output=True, text=True)
        return done.stdout + done.stderr

    def running(self) -> bool:
        done = subprocess.run([self.engine, "inspect", "--format", "{{.State.Running}}", self.name],
                              capture_output=True, text=True)  # fmt: skip
        return done.stdout.strip() == "true"

    def exit_code(self) -> int | None:
        done = subprocess.run([self.engine, "inspect", "--format", "{{.State.ExitCode}}", self.name],
                              capture_output=True, text=True)  # fmt: skip
        return None if self.running() or done.returncode else int(done.stdout.strip())

    def stop(self, timeout: int = 30) -> int | None:
        "SIGTERM (the service drains), SIGKILL after `timeout` seconds; then removed. Its exit code (0: drained)."
        subprocess.run([self.engine, "stop", "-t", str(timeout), self.name], capture_output=True)
        code = self.exit_code()
        subprocess.run([self.engine, "rm", "-f", "-v", self.name], capture_output=True)  # -v: its anonymous volume
        return code


def run_container(
    tag: str,  # the image
    port: int,  # the host port, bound on 127.0.0.1 only
    env: dict[str, str] | None = None,  # settings and secrets (passed as environment, never baked in)
    engine: str | None = None,
    name: str | None = None,  # default: ml-project-<port>
    volume: str | None = None,  # a named volume for /var/lib/ml-project (the prediction log); default: anonymous
    args: tuple[str, ...] = (),  # more `run` options, or (after "--") a command
) -> Container:
    "Start the service's image as production runs it: read-only root file system, a tmpfs /tmp, non-root, 127.0.0.1 only."
    engine = container_engine(engine)
    name = name or f"ml-project-{port}"
    command = list(args[args.index("--") + 1 :]) if "--" in args else []
    options = list(args[: args.index("--")]) if "--" in args else list(args)
    environment = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
    mount = ["-v", f"{volume}:/var/lib/ml-project"] if volume else []
    subprocess.run([engine, "rm", "-f", name], capture_output=True)
    _run([engine, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", *mount,
          "-p", f"127.0.0.1:{port}:8080", *environment, *options, tag, *command], f"{engine} run")  # fmt: skip
    return Container(name=name, engine=engine, url=f"http://127.0.0.1:{port}")


def wait_ready(
    container: Container,
    timeout: float = 60,  # seconds
) -> float:
    "Seconds until the container's /ready answers 200; a clear error, with its log, if it stops or never does."
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(f"{container.url}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if container.exit_code() is not None:
            raise ServiceError(f"container {container.name} stopped:\n{container.logs()[-3000:]}")
        time.sleep(0.05)
    raise ServiceError(f"container {container.name} not ready after {timeout:.0f} s:\n{container.logs()[-3000:]}")


def warm_up():
    "Inside the image, at build time: import what serving imports and answer the model's example, so those modules are compiled."
    from ml_project.serve import app  # noqa: F401  (the service, the predictor, the checks)

    for module in ("ml_project.models.factory", "ml_project.features", "ml_project.preprocessing", "xgboost"):
        importlib.import_module(module)  # what unpickling a model imports, for an image that fetches its model
    model = os.environ.get("ML_PROJECT_SERVE_MODEL")
    if model and Path(model).is_dir():
        from ml_project.serve.predictor import ModelPredictor

        predictor = ModelPredictor.load(model)
        predictor.predict([predictor.metadata["example"]])
        print(f"warmed up: {predictor.name} v{predictor.version}", file=sys.stderr)
