"""The service's image beside the one MLflow generates for the same champion, built on the same base, in one run.

    .venv/bin/python benchmarks/image.py [--mode careful|fast] [--repeats 1000] [--starts 3] [--mlflow]

The churn XGBoost config is trained and registered as `churn`'s champion in a temporary project (benchmarks/serving.py's
`trained_churn`; the project's own files are not touched). Then:

- ours: `ml-project image build --model churn` on the Debian base (`ml-project image base`): its size (goal: <= 500 MB
  for an XGBoost champion, and smaller than MLflow's); cold start, `podman run` to the first 200 from /ready, the
  median of `--starts` starts (goal: <= 5 s); one row per request, `--repeats` requests from one keep-alive client,
  p50/p99 in the container beside `ml-project serve` on the host with the same model and the same key (goal: the
  container's p50 within 10 % of the host's);
- with `--mlflow`: `mlflow models generate-dockerfile -m models:/churn/<v> --env-manager local`, its
  `FROM python:3.11.7-slim` replaced by the same base with this machine's CPython 3.11.7 copied in (Debian's 3.11.2
  cannot install the full lock: some pins need >= 3.11.5), built with the host's package index configuration (its CA
  bundle and find-links mounted), then the same size (also without the CPython layer), cold start (to /ping) and
  one-row figures on /invocations. MLflow installs the full lock (the model is logged with requirements.lock):
  minutes and several GB.

Every answer is checked (status 200, one prediction); the container's probability for the example row equals the
host's to 1e-9.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, ROOT, Target, free_port, ms, one_row, start, stop, trained_churn

os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "deploy" / "podman" / "containers.conf"))
os.environ.setdefault("BUILDAH_ISOLATION", "chroot")
KEY = "benchmark-key-0123456789abcdef"


def cold_start(engine: str, tag: str, env: dict, ready_path: str, starts: int, args=()) -> tuple[float, str, str]:
    "Median seconds from `run` to the first 200 on `ready_path`; the last start is left running (its URL and name)."
    import httpx

    times = []
    for i in range(starts):
        port = free_port()
        name = f"bench-{tag.replace('/', '-').replace(':', '-')}"
        subprocess.run([engine, "rm", "-f", name], capture_output=True)
        environment = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        started = time.perf_counter()
        subprocess.run([engine, "run", "-d", "--name", name, *args, "-p", f"127.0.0.1:{port}:8080", *environment, tag],
                       check=True, capture_output=True)  # fmt: skip
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 300:
                sys.exit(f"{tag} not ready:\n{subprocess.run([engine, 'logs', name], capture_output=True, text=True)}")
            time.sleep(0.02)
        times.append(time.perf_counter() - started)
        if i < starts - 1:
            subprocess.run([engine, "rm", "-f", name], capture_output=True)
    return statistics.median(times), f"http://127.0.0.1:{port}", name


def size_mb(engine: str, tag: str) -> float:
    out = subprocess.run([engine, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True)
    return int(out.stdout.strip()) / 1e6


def python_base(base: str, engine: str, tmp: Path) -> str:
    """`base` with this machine's CPython (sys.base_prefix, e.g. pyenv's 3.11.7) under the same path: what MLflow's
    Dockerfile asks for (`FROM python:3.11.7-slim`) where no registry is reachable. Debian's python3 (3.11.2) cannot
    install the full lock (some pins need >= 3.11.5); the serving lock installs on it."""
    prefix = Path(sys.base_prefix)
    version = ".".join(map(str, sys.version_info[:3]))
    tag = f"localhost/ml-project-base:python{version}"
    if subprocess.run([engine, "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    context = tmp / "python-base"
    context.mkdir()
    stdlib = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run(["tar", "-C", "/", "-cf", str(context / "python.tar"), f"--exclude={stdlib.relative_to('/')}/test",
                    f"--exclude={stdlib.relative_to('/')}/site-packages/*", str(prefix.relative_to("/"))],
                   check=True)  # fmt: skip
    (context / "Containerfile").write_text(
        f"FROM {base}\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends libsqlite3-0 libffi8 libreadline8 libexpat1 "
        "libbz2-1.0 libtirpc3 libnsl2 && rm -rf /var/lib/apt/lists/*\n"
        "ADD python.tar /\n"
        f"ENV PATH={prefix}/bin:$PATH\n"
        "RUN python3 -m ensurepip --upgrade && ln -s python3 $(dirname $(command -v python3))/python 2>/dev/null; "
        "python --version\n"
    )
    subprocess.run([engine, "build", "-t", tag, str(context)], check=True, capture_output=True)
    return tag


def mlflow_image(env: dict, name: str, version: str, base: str, engine: str, tmp: Path) -> str:
    "MLflow's generated Dockerfile for models:/<name>/<version> on `base`, built with the host's package index settings."
    out = tmp / "mlflow-image"
    subprocess.run([str(BIN / "mlflow"), "models", "generate-dockerfile", "-m", f"models:/{name}/{version}",
                    "-d", str(out), "--env-manager", "local"], env=env, check=True, capture_output=True)  # fmt: skip
    dockerfile = (out / "Dockerfile").read_text()
    first, rest = dockerfile.split("\n", 2)[1], dockerfile.split("\n", 2)[2]
    assert first.startswith("FROM python:"), first
    settings = "ENV PIP_CERT=/host/ca.crt PIP_FIND_LINKS=/host/wheels PIP_NO_CACHE_DIR=1\n"  # the host's pip settings
    (out / "Dockerfile").write_text(dockerfile.split("\n", 1)[0] + f"\nFROM {base}\n" + settings + rest)
    tag = f"mlflow-generated/{name}:{version}"
    mounts = ["-v", "/etc/ssl/certs/ca-certificates.crt:/host/ca.crt:ro"]
    if Path("/opt/wheels").is_dir():
        mounts += ["-v", "/opt/wheels:/host/wheels:ro"]
    started = time.perf_counter()
    done = subprocess.run([engine, "build", "--format", "docker", *mounts, "-t", tag, str(out)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"MLflow's image did not build:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"MLflow's image built in {time.perf_counter() - started:.0f} s")
    return tag


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="careful", choices=["careful", "fast"])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--mlflow", action="store_true", help="also build and measure MLflow's generated image")
    args = parser.parse_args()

    from ml_project.deploy import image
    from ml_project.serve.keys import key_digest

    engine = image.container_engine()
    keys = {"ML_PROJECT_API_KEYS": "env:BENCH_KEYS", "BENCH_KEYS": f"bench predict {key_digest(KEY)}"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = trained_churn(tmp, args.mode)
        os.environ.update(env)  # this process builds with the temporary project's settings
        from ml_project.settings import get_settings

        name = get_settings().for_mode("churn")  # churn__fast in fast mode
        context = image.prepare_context(name, get_settings())
        tag = image.build_image(context, engine=engine)
        version = context.model["version"]
        model_folder = context.folder / "model" / "registry" / name / f"v{version}"
        rows = [json.loads((model_folder / "metadata.json").read_text())["example"]]

        auth = {"Authorization": f"Bearer {KEY}"}
        wrap_ours = lambda rs: {"rows": rs}
        count_ours = lambda body: len(body["predictions"])
        started, url, container = cold_start(
            engine, tag, keys, "/ready", args.starts, ("--read-only", "--tmpfs", "/tmp")
        )
        ours = Target("ours in the container", f"{url}/predict", wrap_ours, count_ours)
        ours_ms = one_row(ours, rows, args.repeats, auth)
        in_container = probability(ours, rows, auth)
        subprocess.run([engine, "rm", "-f", container], capture_output=True)

        port = free_port()
        host_env = {**env, **keys}
        host = start([str(BIN / "ml-project"), "serve", "--model", name, "--port", str(port)], host_env,
                     f"http://127.0.0.1:{port}/ready", tmp / "host.log")  # fmt: skip
        try:
            on_host = Target("ours on the host", f"http://127.0.0.1:{port}/predict", wrap_ours, count_ours)
            host_ms = one_row(on_host, rows, args.repeats, auth)
            assert abs(probability(on_host, rows, auth) - in_container) <= 1e-9
        finally:
            stop(host)

        size = size_mb(engine, tag)
        print(f"\nchurn XGBoost champion (v{version}, {args.mode} mode), image {tag} on {image.BASE_IMAGE}:")
        print(f"{'':34s} {'figure':>10s}   goal")
        print(f"{'image size (MB)':34s} {size:10.0f}   <= 500")
        print(f"{'cold start to /ready (s, median)':34s} {started:10.2f}   <= 5")
        p50_c, p50_h = ms(ours_ms, 50), ms(host_ms, 50)
        print(f"{'one row p50 / p99 in container (ms)':34s} {p50_c:6.2f} / {ms(ours_ms, 99):.2f}")
        print(f"{'one row p50 / p99 on the host (ms)':34s} {p50_h:6.2f} / {ms(host_ms, 99):.2f}")
        print(f"{'container p50 / host p50':34s} {p50_c / p50_h:10.2f}   <= 1.10")
        print(f"(lock: {context.lock.name})")

        if args.mlflow:
            m_base = python_base(image.BASE_IMAGE, engine, tmp)
            m_tag = mlflow_image(env, name, version, m_base, engine, tmp)
            m_size = size_mb(engine, m_tag)
            m_started, m_url, m_name = cold_start(engine, m_tag, {}, "/ping", args.starts)
            records = lambda rs: {"dataframe_records": rs}
            count_mlflow = lambda body: len(body["predictions"])
            theirs = Target("MLflow's image", f"{m_url}/invocations", records, count_mlflow)
            theirs_ms = one_row(theirs, rows, args.repeats)
            subprocess.run([engine, "rm", "-f", m_name], capture_output=True)
            python_mb = size_mb(engine, m_base) - size_mb(engine, image.BASE_IMAGE)
            print(f"\nMLflow's generated image {m_tag} on the same base + CPython {sys.version.split()[0]}:")
            print(f"{'image size (MB)':34s} {m_size:10.0f}   ours {size:.0f} ({size / m_size:.2f}x)")
            print(f"{'  less the CPython layer (MB)':34s} {m_size - python_mb:10.0f}   ours {size:.0f}")
            print(f"{'cold start to /ping (s, median)':34s} {m_started:10.2f}   ours {started:.2f}")
            print(
                f"{'one row p50 / p99 (ms)':34s} {ms(theirs_ms, 50):6.2f} / {ms(theirs_ms, 99):.2f}   ours {p50_c:.2f}"
            )


def probability(target, rows, headers) -> float:
    import httpx

    answer = httpx.post(target.url, json=target.wrap(rows), headers=headers, timeout=30).json()
    return answer["predictions"][0]["probability"]


if __name__ == "__main__":
    main()
