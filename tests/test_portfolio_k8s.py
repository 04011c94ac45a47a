"""The portfolio job on Kubernetes (env/k8s/spark/): the manifests validate offline against the
newest Kubernetes schemas, the job's pods follow the service's pod policy, and the documented
spark-submit command points at the files, account, image pins and CLI flags that exist. No
cluster, no network."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from scoring.portfolio.cli import parser

ROOT = Path(__file__).resolve().parent.parent
SPARK = ROOT / "env/k8s/spark"
SUBMIT = (SPARK / "submit.sh").read_text()
BENTOML_UID = 1034


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((SPARK / name).read_text()) if doc]


def confs() -> dict[str, str]:
    return dict(re.findall(r"--conf (spark\.[\w.]+)=\"?([^\s\"]+)\"?", SUBMIT))


def pod() -> dict:
    (template,) = documents("pod-template.yaml")
    return template


@pytest.mark.parametrize("name", ["rbac.yaml", "pod-template.yaml"])
def test_spark_manifests_validate_against_the_newest_kubernetes_schemas_offline(name):
    version = kubernetes_validate.latest_version()
    for obj in documents(name):
        kubernetes_validate.validate(obj, version, strict=True)


def test_job_pods_run_as_the_non_root_bentoml_user_without_capabilities():
    spec = pod()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == BENTOML_UID
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the one writable place


def test_submit_uses_the_pod_template_and_its_container_for_driver_and_executors():
    conf = confs()
    (container,) = pod()["spec"]["containers"]
    for role in ("driver", "executor"):
        assert (ROOT / conf[f"spark.kubernetes.{role}.podTemplateFile"]).resolve() == (
            SPARK / "pod-template.yaml"
        )
        assert conf[f"spark.kubernetes.{role}.podTemplateContainerName"] == container["name"]


def test_the_driver_runs_under_the_account_the_role_lets_manage_executor_pods():
    rbac = {obj["kind"]: obj for obj in documents("rbac.yaml")}
    account = rbac["ServiceAccount"]["metadata"]["name"]
    assert confs()["spark.kubernetes.authenticate.driver.serviceAccountName"] == account
    assert rbac["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    assert rbac["RoleBinding"]["roleRef"]["name"] == rbac["Role"]["metadata"]["name"]
    (pods,) = [rule for rule in rbac["Role"]["rules"] if "pods" in rule["resources"]]
    assert {"create", "watch", "delete"} <= set(pods["verbs"])


def test_submit_is_cluster_mode_on_kubernetes_and_runs_the_jobs_entry_point_in_the_image():
    assert '--master "k8s://$K8S_API"' in SUBMIT
    assert "--deploy-mode cluster" in SUBMIT
    (app,) = re.findall(r"local://(\S+)", SUBMIT)
    # The image's Bento keeps the source tree under /home/bentoml/bento/src.
    assert (ROOT / app.removeprefix("/home/bentoml/bento/src/")).is_file()
    assert app.endswith("scoring/portfolio/__main__.py")


def test_the_documented_job_arguments_are_the_clis():
    """The usage example in submit.sh's header (after the script's name) parses as the CLI's."""
    lines = [line.lstrip("# ").rstrip(" \\") for line in SUBMIT.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("bash env/k8s/spark/"))
    words = shlex.split(" ".join(lines[start : start + 2]))
    parsed = parser().parse_args(words[2:])
    assert parsed.input.startswith("s3a://")
    assert parsed.ids == ["SK_ID_CURR"]
    assert parsed.reasons == 4


def test_the_image_adds_the_pyspark_the_lock_pins():
    lock = (ROOT / "env/requirements.lock").read_text()
    containerfile = (SPARK / "Containerfile").read_text()
    for package in ("pyspark", "py4j"):
        (pinned,) = re.findall(rf"^{package}==(\S+)$", lock, re.MULTILINE)
        assert f"{package}=={pinned}" in containerfile


@pytest.mark.parametrize("script", ["entrypoint.sh", "submit.sh"])
def test_the_scripts_parse_as_bash(script):
    result = subprocess.run(["bash", "-n", str(SPARK / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
