"""The Kubernetes base (env/k8s) renders with `kubectl kustomize`, validates offline against the
Kubernetes JSON schemas, and follows the deployment policy. No cluster, no network."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scoring.serving.edge.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
BASE = "env/k8s"
KINDS = (
    "ConfigMap",  # the settings
    "ConfigMap",  # the Grafana dashboard
    "Deployment",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PrometheusRule",
    "Service",
)
# Custom resources kubernetes-validate has no schema for: their CRD's own schema, kept in the
# repository (no cluster, no network).
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "tests/fixtures/prometheusrule-crd.yaml"
}
BENTOML_UID = 1034


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on the PATH: it renders the kustomize base")
    result = subprocess.run(
        [kubectl, "kustomize", BASE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {BASE} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def crd_errors(obj: dict) -> list[str]:
    """`obj` against its CustomResourceDefinition's openAPIV3Schema (served version)."""
    crd = yaml.safe_load((ROOT / CRD_SCHEMAS[obj["apiVersion"], obj["kind"]]).read_text())
    version = obj["apiVersion"].split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    validator = jsonschema.Draft7Validator(served["schema"]["openAPIV3Schema"])
    return [
        f"{name_of(obj)}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(obj)
    ]


def name_of(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def one(rendered: list[dict], kind: str) -> dict:
    """The single rendered object of `kind`; fails naming what was rendered otherwise."""
    found = [obj for obj in rendered if obj["kind"] == kind]
    assert len(found) == 1, (
        f"expected exactly one {kind}, rendered {len(found)}: {[name_of(o) for o in rendered]}"
    )
    return found[0]


def named(rendered: list[dict], kind: str, prefix: str) -> dict:
    """The single rendered `kind` whose name starts with `prefix` (a generated name's hash)."""
    found = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, f"expected one {kind} {prefix}*, rendered {len(found)}"
    return found[0]


def settings_map(rendered: list[dict]) -> dict:
    return named(rendered, "ConfigMap", "credit-scoring-settings")


def pod_template(rendered: list[dict]) -> dict:
    return one(rendered, "Deployment")["spec"]["template"]


def containers(rendered: list[dict]) -> list[dict]:
    spec = pod_template(rendered)["spec"]
    found = spec.get("initContainers", []) + spec["containers"]
    assert found, "the Deployment's pod template has no containers"
    return found


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def effective_security_context(rendered: list[dict], container: dict) -> dict:
    """Pod-level settings, overridden by the container's own (as the kubelet applies them)."""
    return {
        **pod_template(rendered)["spec"].get("securityContext", {}),
        **container.get("securityContext", {}),
    }


def pre_stop_sleep_s(container: dict) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    assert pre_stop, f"container {container['name']} has no preStop hook"
    if "sleep" in pre_stop:  # the Kubernetes 1.30+ sleep action
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    assert command[:1] == ["sleep"], (
        f"container {container['name']}: preStop should be `sleep <seconds>`, is {pre_stop}"
    )
    assert len(command) == 2, f"container {container['name']}: preStop {command}"
    return int(command[1])


def request_timeout_s(rendered: list[dict]) -> int:
    """The longest request BentoML lets run: the service's setting, as the ConfigMap sets it."""
    return Settings.from_env(settings_map(rendered)["data"]).request_timeout_s


def test_base_renders_each_object_once_and_two_config_maps(
    rendered,
):
    kinds = Counter(obj["kind"] for obj in rendered)
    assert kinds == Counter(KINDS), f"rendered kinds {dict(kinds)}, expected {KINDS}"


def test_every_object_validates_against_the_newest_kubernetes_schemas_offline(rendered):
    version = kubernetes_validate.latest_version()
    errors = []
    for obj in rendered:
        if (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS:
            errors += crd_errors(obj)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{name_of(obj)}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{name_of(obj)}: {error.message}")
    assert not errors, f"invalid against Kubernetes {version} schemas:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    ("probe", "path"),
    [("startupProbe", "/readyz"), ("livenessProbe", "/livez"), ("readinessProbe", "/readyz")],
)
def test_every_container_probes_the_service_health_endpoint(rendered, probe, path):
    for container in pod_template(rendered)["spec"]["containers"]:
        assert probe in container, f"container {container['name']} has no {probe}"
        http_get = container[probe].get("httpGet", {})
        assert http_get.get("path") == path, (
            f"container {container['name']}: {probe} gets {http_get.get('path')}, not {path}"
        )
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        port = ports.get(http_get["port"], http_get["port"])
        assert port == 3000, f"container {container['name']}: {probe} port {port}, not 3000"


def test_every_container_limits_cpu_and_memory_at_its_requests(rendered):
    for container in containers(rendered):
        resources = container.get("resources", {})
        limits, requests = resources.get("limits", {}), resources.get("requests", {})
        assert {"cpu", "memory"} <= limits.keys(), (
            f"container {container['name']} lacks cpu/memory limits: {limits}"
        )
        assert requests == limits, (
            f"container {container['name']}: requests {requests} != limits {limits} "
            "(Guaranteed QoS needs them equal)"
        )


def test_lightgbm_threads_times_workers_equal_the_cpu_limit(rendered):
    settings = settings_map(rendered)["data"]
    (container,) = pod_template(rendered)["spec"]["containers"]
    cpus = cpu_cores(container["resources"]["limits"]["cpu"])
    workers = int(settings["SCORING_WORKERS"])
    threads = int(settings["SCORING_LGBM_THREADS"])
    assert workers * threads == cpus, (
        f"{workers} workers x {threads} LightGBM threads != CPU limit {cpus}: "
        "threads beyond the CFS quota get throttled"
    )


def test_config_map_sets_only_known_scoring_settings(rendered):
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    unknown = settings_map(rendered)["data"].keys() - known
    assert not unknown, f"settings.env sets {sorted(unknown)}, which the service never reads"


def test_config_map_settings_pass_the_service_start_up_validation(rendered):
    data = settings_map(rendered)["data"]
    try:
        Settings.from_env(data)
    except ValueError as error:
        pytest.fail(f"the service would refuse to start with settings.env: {error}")


def test_threshold_override_is_unset_so_the_model_label_rules(rendered):
    data = settings_map(rendered)["data"]
    assert "SCORING_THRESHOLD" not in data, (
        f"settings.env overrides the threshold by default: {data['SCORING_THRESHOLD']!r}"
    )


def test_every_container_runs_as_the_non_root_bentoml_user(rendered):
    for container in containers(rendered):
        context = effective_security_context(rendered, container)
        assert context.get("runAsNonRoot") is True, f"{container['name']}: runAsNonRoot not true"
        assert context.get("runAsUser") == BENTOML_UID, (
            f"{container['name']}: runAsUser {context.get('runAsUser')}, not {BENTOML_UID}"
        )


def test_every_container_has_a_read_only_root_filesystem(rendered):
    for container in containers(rendered):
        context = container.get("securityContext", {})
        assert context.get("readOnlyRootFilesystem") is True, (
            f"container {container['name']}: readOnlyRootFilesystem is not true"
        )


def test_every_container_drops_all_capabilities(rendered):
    for container in containers(rendered):
        dropped = container.get("securityContext", {}).get("capabilities", {}).get("drop", [])
        assert "ALL" in dropped, f"container {container['name']} drops {dropped}, not ALL"


def test_no_container_can_escalate_privileges(rendered):
    for container in containers(rendered):
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, (
            f"container {container['name']}: allowPrivilegeEscalation is not false"
        )


def test_every_container_uses_the_runtime_default_seccomp_profile(rendered):
    for container in containers(rendered):
        profile = effective_security_context(rendered, container).get("seccompProfile", {})
        assert profile.get("type") == "RuntimeDefault", (
            f"container {container['name']}: seccompProfile {profile}"
        )


def test_every_container_mounts_tmp_from_an_empty_dir(rendered):
    volumes = {v["name"]: v for v in pod_template(rendered)["spec"].get("volumes", [])}
    for container in pod_template(rendered)["spec"]["containers"]:
        mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert mounts, f"container {container['name']} mounts nothing at /tmp"
        volume = volumes.get(mounts[0]["name"], {})
        assert "emptyDir" in volume, f"/tmp of {container['name']} is not an emptyDir: {volume}"
        assert not mounts[0].get("readOnly"), f"/tmp of {container['name']} is read-only"


def test_no_image_is_untagged_or_latest(rendered):
    for container in containers(rendered):
        image = container["image"]
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        assert ":" in last, f"container {container['name']}: image {image} has no tag"
        assert last.rsplit(":", 1)[1] != "latest", (
            f"container {container['name']}: image {image} uses the moving `latest` tag"
        )


def test_pods_carry_prometheus_scrape_annotations_for_metrics(rendered):
    annotations = pod_template(rendered)["metadata"].get("annotations", {})
    expected = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "3000",
        "prometheus.io/path": "/metrics",
    }
    actual = {key: annotations.get(key) for key in expected}
    assert actual == expected, f"pod template annotations {annotations}"


def test_every_container_pauses_in_pre_stop_before_sigterm(rendered):
    for container in pod_template(rendered)["spec"]["containers"]:
        assert pre_stop_sleep_s(container) > 0, f"container {container['name']}: no pause"


def test_grace_period_covers_the_pre_stop_pause_and_the_longest_request(rendered):
    spec = pod_template(rendered)["spec"]
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for container in spec["containers"]:
        needed = pre_stop_sleep_s(container) + request_timeout_s(rendered)
        assert grace > needed, (
            f"terminationGracePeriodSeconds {grace} <= preStop pause + request timeout "
            f"({needed} s): in-flight requests of {container['name']} would be killed"
        )


def test_hpa_scales_the_rendered_deployment(rendered):
    deployment = one(rendered, "Deployment")
    target = one(rendered, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    ), f"HPA targets {target}, not {name_of(deployment)}"


def test_deployment_leaves_the_replica_count_to_the_hpa(rendered):
    spec = one(rendered, "Deployment")["spec"]
    assert "replicas" not in spec, (
        f"Deployment sets replicas: {spec['replicas']}; every apply would reset the HPA's count"
    )


def test_rolling_update_never_drops_below_serving_capacity(rendered):
    strategy = one(rendered, "Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0, strategy


def test_deployment_reads_settings_from_the_rendered_config_map(rendered):
    config_map = settings_map(rendered)["metadata"]["name"]
    for container in pod_template(rendered)["spec"]["containers"]:
        referenced = [
            source["configMapRef"]["name"]
            for source in container.get("envFrom", [])
            if "configMapRef" in source
        ]
        assert referenced == [config_map], (
            f"container {container['name']} reads ConfigMaps {referenced}, "
            f"the base renders {config_map}"
        )


def test_service_selects_the_pod_template_labels(rendered):
    selector = one(rendered, "Service")["spec"].get("selector", {})
    labels = pod_template(rendered)["metadata"].get("labels", {})
    assert selector, "the Service has no selector"
    assert selector.items() <= labels.items(), f"Service selector {selector}, pod labels {labels}"


def test_service_targets_the_containers_http_port(rendered):
    (port,) = one(rendered, "Service")["spec"]["ports"]
    (container,) = pod_template(rendered)["spec"]["containers"]
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    target = ports.get(port["targetPort"], port["targetPort"])
    assert (port["port"], target) == (80, 3000), f"Service port {port}, container ports {ports}"


def test_pdb_selects_the_pod_template_labels(rendered):
    selector = one(rendered, "PodDisruptionBudget")["spec"]["selector"].get("matchLabels", {})
    labels = pod_template(rendered)["metadata"].get("labels", {})
    assert selector, "the PodDisruptionBudget has no matchLabels"
    assert selector.items() <= labels.items(), f"PDB selector {selector}, pod labels {labels}"


def network_policy(rendered: list[dict]) -> dict:
    return one(rendered, "NetworkPolicy")["spec"]


def test_network_policy_selects_exactly_the_pod_template_labels(rendered):
    """Never `{}`: an empty selector would shut off every pod in the namespace."""
    selector = network_policy(rendered)["podSelector"].get("matchLabels", {})
    labels = pod_template(rendered)["metadata"].get("labels", {})
    assert selector, "the NetworkPolicy selects every pod of the namespace"
    assert selector.items() <= labels.items(), f"selector {selector}, pod labels {labels}"


def test_network_policy_allows_no_egress_at_all(rendered):
    policy = network_policy(rendered)
    assert "Egress" in policy["policyTypes"]
    assert policy.get("egress", []) == [], policy.get("egress")


def _expressions(selector: dict) -> dict[str, list[str]]:
    found = {e["key"]: e["values"] for e in selector.get("matchExpressions", [])}
    return {**{k: [v] for k, v in selector.get("matchLabels", {}).items()}, **found}


def test_network_policy_admits_only_labelled_callers_and_prometheus_to_the_http_port(rendered):
    policy = network_policy(rendered)
    assert "Ingress" in policy["policyTypes"]
    (rule,) = policy["ingress"]
    (container,) = pod_template(rendered)["spec"]["containers"]
    http = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]] == [("http", "TCP")]
    assert "http" in http
    sources = [
        (kind, _expressions(peer[kind])) for peer in rule["from"] for kind in peer
    ]  # each peer one selector: a pod AND namespace pair would narrow, not widen
    assert all(len(peer) == 1 for peer in rule["from"]), rule["from"]
    client = {"credit-scoring.example/client": ["true"]}
    assert sorted(sources, key=str) == sorted(
        [
            ("podSelector", client),
            ("namespaceSelector", client),
            ("namespaceSelector", {"kubernetes.io/metadata.name": ["monitoring"]}),
        ],
        key=str,
    )
    # No empty selector anywhere: `{}` would admit every pod or every namespace.
    assert all(selector for _, selector in sources), sources


def test_the_api_tokens_come_from_a_secret_mounted_by_reference_as_the_settings_say(rendered):
    spec = pod_template(rendered)["spec"]
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "credit-scoring-api-tokens"
    assert volume["secret"].get("optional") is False, "a missing Secret must not start it open"
    assert not any(o["kind"] == "Secret" for o in rendered), "a token value in the repository"
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount.get("readOnly") is True, mount
    assert "subPath" not in mount, "a subPath mount never sees the Secret's updates"
    tokens_file = Settings.from_env(settings_map(rendered)["data"]).api_tokens_file
    assert tokens_file is not None
    assert tokens_file.parent == Path(mount["mountPath"])


def test_the_grafana_dashboard_is_a_config_map_grafanas_sidecar_discovers(rendered):
    import json

    dashboard = named(rendered, "ConfigMap", "credit-scoring-grafana-dashboard")
    assert dashboard["metadata"]["name"] == "credit-scoring-grafana-dashboard"  # no hash
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = dashboard["data"].values()
    shipped = json.loads((ROOT / BASE / "grafana-dashboard.json").read_text())
    assert json.loads(content) == shipped
    assert shipped.get("panels"), "the dashboard has no panels"
