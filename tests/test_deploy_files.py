"""The deployment files pass the checks their ecosystems use: the Kubernetes manifests (deploy/k8s/) against the
Kubernetes schemas (kubernetes-validate, which ships them: no network), the Containerfiles with hadolint, the
compose file with the compose tool's own parser. And they agree with the image: its user, its port, its probes.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import BIN, REPO

K8S = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
SERVICES = {"api-blue-1", "api-blue-2", "api-green-1", "api-green-2", "lb", "mlflow", "postgres", "prometheus"}
CONTAINERFILES = [REPO / "deploy" / "Containerfile", *sorted((REPO / "deploy" / "stack").glob("*/Containerfile"))]
VERSIONS = ("1.29.0", "1.37.0")  # the oldest Kubernetes still commonly run, and the newest the schemas know


def _manifests() -> dict[str, dict]:
    return {doc["kind"]: doc for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_kubernetes_manifests_pass_the_schemas(version):
    found = _manifests()
    assert set(found) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                          "PodDisruptionBudget"}  # fmt: skip
    for doc in found.values():
        kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(found["Deployment"])  # the check can fail: a misspelt field is refused
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_manifests_agree_with_the_image_and_each_other():
    found = _manifests()
    deployment, pod = found["Deployment"], found["Deployment"]["spec"]["template"]
    (api,) = pod["spec"]["containers"]
    containerfile = (REPO / "deploy" / "Containerfile").read_text()
    user = re.search(r"^USER (\d+)", containerfile, re.MULTILINE).group(1)
    port = re.search(r"^EXPOSE (\d+)", containerfile, re.MULTILINE).group(1)
    assert str(pod["spec"]["securityContext"]["runAsUser"]) == user
    assert str(api["ports"][0]["containerPort"]) == port
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready" and api["livenessProbe"]["httpGet"]["path"] == "/health"
    assert api["securityContext"]["readOnlyRootFilesystem"] is True  # as the stack and the image test run it
    mounts = {m["mountPath"] for m in api["volumeMounts"]}
    assert {"/var/lib/ml-project", "/tmp"} <= mounts  # the prediction log's volume, and the only other writable place
    keys = api["env"][0]["value"].removeprefix("file:")
    assert any(keys.startswith(m) for m in mounts)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert (
        volumes["predictions"]["persistentVolumeClaim"]["claimName"]
        == found["PersistentVolumeClaim"]["metadata"]["name"]
    )
    assert "secretName" in volumes["api-keys"]["secret"]  # a reference: no key is in the manifests
    labels = pod["metadata"]["labels"]
    for selector in (found["Service"]["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
                     found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):  # fmt: skip
        assert selector.items() <= labels.items()
    assert found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert found["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30  # longer than the service's drain


def _hadolint(*files: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    return subprocess.run([tool, "--no-color", "-c", str(REPO / "deploy" / "hadolint.yaml"), *map(str, files)],
                          capture_output=True, text=True)  # fmt: skip


def test_the_containerfiles_pass_hadolint(tmp_path):
    done = _hadolint(*CONTAINERFILES)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Containerfile"  # the check can fail: a moving tag and `cd` in RUN are what it exists to catch
    bad.write_text("FROM debian:latest\nRUN cd /tmp && echo hi\n")
    done = _hadolint(bad)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3003" in done.stdout


def test_the_compose_file_parses_with_the_compose_tool():
    "podman-compose 1.0 has no `config`: its dry run prints the containers it would run (and makes only the volumes and network, removed here); docker compose has `config`."
    from ml_project.deploy import image, stack
    from ml_project.errors import ConfigError, ServiceError

    try:
        engine = image.container_engine()
        command = stack.compose(engine)
    except (ServiceError, ConfigError) as e:
        pytest.skip(f"no compose tool: {e}")
    name = f"ml-project-dry-{os.getpid()}"
    env = {**os.environ, "ML_PROJECT_IMAGE_BLUE": "ml-project/churn:1", "ML_PROJECT_IMAGE_GREEN": "ml-project/churn:2"}
    compose_file = str(REPO / "deploy" / "compose.yaml")
    if command == ["podman-compose"]:
        try:
            done = subprocess.run([*command, "--dry-run", "-p", name, "-f", compose_file, "up", "--no-build", "-d"],
                                  capture_output=True, text=True, env=env)  # fmt: skip
        finally:
            for kind in ("volume", "network"):
                found = subprocess.run([engine, kind, "ls", "-q", "--filter", f"label=com.docker.compose.project={name}"],
                                       capture_output=True, text=True).stdout.split()  # fmt: skip
                if found:
                    subprocess.run([engine, kind, "rm", *found], capture_output=True)
        assert done.returncode == 0, done.stdout + done.stderr
        runs = [line for line in done.stdout.splitlines() if line.startswith("podman run ")]
        names = sorted(re.search(r"--name=(\S+)", r).group(1).removeprefix(name + "_").rsplit("_", 1)[0] for r in runs)
        assert names == sorted(SERVICES)
        assert any("api-green-2" in r and r.endswith(" ml-project/churn:2") for r in runs)
        published = re.findall(r" -p (\S+)", " ".join(runs))
    else:
        done = subprocess.run([*command, "-f", compose_file, "config", "--format", "json"], capture_output=True,
                              text=True, env=env)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        services = yaml.safe_load(done.stdout)["services"]
        assert set(services) == SERVICES
        published = [f"{p.get('host_ip', '')}:{p['published']}" for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)  # the host's loopback only
