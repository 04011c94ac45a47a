"""The Kubernetes base renders with `kubectl kustomize`, validates against the Kubernetes
schemas offline, and follows the deployment policy."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.servers import ROOT


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on the PATH: cannot render the kustomize base")
    output = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "env" / "k8s")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(output) if doc]


def one(rendered: list[dict], kind: str) -> dict:
    found = [obj for obj in rendered if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def pod_spec(rendered: list[dict]) -> dict:
    return one(rendered, "Deployment")["spec"]["template"]["spec"]


def test_base_renders_deployment_service_hpa_pdb_and_configmap(rendered):
    kinds = sorted(obj["kind"] for obj in rendered)
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    )


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    version = latest_version()
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)


def test_probes_hit_readyz_and_livez(rendered):
    (container,) = pod_spec(rendered)["containers"]
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_resource_requests_equal_limits(rendered):
    (container,) = pod_spec(rendered)["containers"]
    resources = container["resources"]
    assert set(resources["limits"]) == {"cpu", "memory"}
    assert resources["requests"] == resources["limits"]


def test_lightgbm_threads_times_workers_match_the_cpu_limit(rendered):
    (container,) = pod_spec(rendered)["containers"]
    settings = one(rendered, "ConfigMap")["data"]
    cpus = float(container["resources"]["limits"]["cpu"])
    assert int(settings["SCORING_WORKERS"]) * int(settings["SCORING_LGBM_THREADS"]) == cpus


def test_pod_runs_non_root_read_only_without_capabilities(rendered):
    spec = pod_spec(rendered)
    (container,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def test_tmp_is_a_writable_empty_dir(rendered):
    spec = pod_spec(rendered)
    (container,) = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume


def test_image_is_pinned_not_latest(rendered):
    (container,) = pod_spec(rendered)["containers"]
    image = container["image"]
    assert "@sha256:" in image or (
        ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    )


def test_pre_stop_pause_fits_in_the_termination_grace_period(rendered):
    spec = pod_spec(rendered)
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(command[1]) + 30  # + traffic timeout


def test_prometheus_scrape_annotations_point_at_metrics(rendered):
    annotations = one(rendered, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "3000"


def test_config_map_hpa_service_and_pdb_point_at_the_deployment(rendered):
    deployment = one(rendered, "Deployment")
    (container,) = pod_spec(rendered)["containers"]
    config_map = one(rendered, "ConfigMap")["metadata"]["name"]
    assert container["envFrom"][0]["configMapRef"]["name"] == config_map
    assert (
        one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == (deployment["metadata"]["name"])
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        obj = one(rendered, kind)
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= pod_labels.items(), kind
