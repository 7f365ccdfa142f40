"""deploy/kubernetes: the base and the example overlay, rendered as kustomize would and
checked offline: every core object against the Kubernetes API schemas
(kubernetes-validate), the custom resources (KEDA, Prometheus operator) for the fields
their operators require, and the ties between the objects and skiplock itself."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.api.auth import AuthConfig
from skiplock.cli import main
from skiplock.cli.worker import DEFAULTS
from skiplock.version import __version__

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "example"
# the oldest Kubernetes still commonly run, and the newest the schemas know
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CLUSTER_SCOPED = {"Namespace"}
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")
# what the loader below implements: any other kustomization field would be ignored
KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
# a worker needs a moment past its grace to hand back what it could not finish and exit
EXIT_MARGIN = 10


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge patch, as far as these manifests use it: maps merge, lists of
    named items (containers, env, ports, volumes) merge by name, other lists replace."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        elif (
            isinstance(value, list)
            and isinstance(current, list)
            and all(isinstance(i, dict) and "name" in i for i in [*value, *current])
        ):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` gives, for the fields in KNOWN_FIELDS."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= KNOWN_FIELDS, set(kustomization) - KNOWN_FIELDS
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        assert path.exists(), path
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, patch
        for doc in yaml.safe_load_all((directory / patch["path"]).read_text()):
            (target,) = [
                o
                for o in objects
                if (o["kind"], o["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])
            ]
            merge(target, doc)
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in containers(obj):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for rule in selector.get("matchExpressions", []):
        assert rule["operator"] == "In"
        if labels.get(rule["key"]) not in rule["values"]:
            return False
    return True


RENDERED = {"base": render(BASE), "overlay": render(OVERLAY)}
both = pytest.mark.parametrize("name", sorted(RENDERED))


def check_custom_resource(obj: dict[str, Any]) -> None:
    """The fields the KEDA and Prometheus operators require of each kind."""
    spec = obj["spec"]
    assert obj["metadata"]["name"]
    if obj["kind"] == "ScaledObject":
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"]
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        for trigger in spec["triggers"]:
            assert trigger["type"] and isinstance(trigger["metadata"], dict)
            # KEDA wants every metadata value as a string
            assert all(isinstance(v, str) for v in trigger["metadata"].values())
    elif obj["kind"] == "ServiceMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert isinstance(spec["selector"], dict) and spec["endpoints"]
        for endpoint in spec["endpoints"]:
            assert endpoint.get("port") or endpoint.get("targetPort")
    elif obj["kind"] == "PodMonitor":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert isinstance(spec["selector"], dict) and spec["podMetricsEndpoints"]
        for endpoint in spec["podMetricsEndpoints"]:
            assert endpoint.get("port") or endpoint.get("portNumber")
    elif obj["kind"] == "PrometheusRule":
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert spec["groups"]
        for group in spec["groups"]:
            assert group["name"] and group["rules"]
            for rule in group["rules"]:
                assert rule["expr"] and (rule.get("alert") or rule.get("record"))
    else:
        raise AssertionError(f"no check for {obj['kind']}")


@both
def test_every_object_is_valid(name: str) -> None:
    objects = RENDERED[name]
    kinds = sorted(o["kind"] for o in objects)
    for kind in ("Deployment", "Service", "Job", "PodDisruptionBudget", "NetworkPolicy"):
        assert kind in kinds, kind
    for kind in (
        "ScaledObject",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ServiceAccount",
    ):
        assert kinds.count(kind) == 1, kind
    for obj in objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            check_custom_resource(obj)
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_overlay_names_its_namespace_image_and_app() -> None:
    objects = RENDERED["overlay"]
    assert one(objects, "Namespace", "jobs")
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "jobs", obj["metadata"]["name"]
        for container in containers(obj):
            assert container["image"] == "registry.example.com/acme/billing-jobs:2026.12.1"
    worker = containers(one(objects, "Deployment", "skiplock-worker"))[0]
    assert env(worker)["SKIPLOCK_APP"]["value"] == "billing.jobs:app"
    assert one(objects, "Deployment", "skiplock-api")["spec"]["replicas"] == 3


def test_the_base_image_is_this_version_never_latest() -> None:
    for obj in RENDERED["base"]:
        for container in containers(obj):
            assert container["image"] == f"skiplock:{__version__}"


@both
def test_each_container_runs_a_real_command_with_real_settings(name: str) -> None:
    """Every container's args are a skiplock command, and every SKIPLOCK_* variable it
    sets is one that command (or the root group) reads."""
    for obj in RENDERED[name]:
        for container in containers(obj):
            args = container["args"]
            assert CliRunner().invoke(main, [*args, "--help"]).exit_code == 0, args
            command = main.commands[args[0]]
            known = {"SKIPLOCK_DSN", "DATABASE_URL"} | {
                p.envvar for c in (main, command) for p in c.params if isinstance(p.envvar, str)
            }
            for variable in env(container):
                assert variable in known, (args[0], variable)
            assert "SKIPLOCK_DSN" in env(container)


def test_the_migration_job_migrates() -> None:
    job = one(RENDERED["base"], "Job", "skiplock-migrate")
    (container,) = containers(job)
    assert container["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


@both
def test_kubernetes_waits_longer_than_the_workers_shutdown_grace(name: str) -> None:
    worker = one(RENDERED[name], "Deployment", "skiplock-worker")
    (container,) = containers(worker)
    setting = env(container).get("SKIPLOCK_SHUTDOWN_GRACE")
    grace = float(setting["value"]) if setting else DEFAULTS.shutdown_grace
    assert grace == (30 if name == "base" else 60)
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= (
        grace + EXIT_MARGIN
    )
    # KEDA owns the replicas: a count here would be reset at every apply
    assert "replicas" not in worker["spec"]


@both
def test_keda_scales_the_workers_by_their_own_concurrency(name: str) -> None:
    objects = RENDERED[name]
    scaled = one(objects, "ScaledObject", "skiplock-worker")
    target = one(objects, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
    (container,) = containers(target)
    concurrency = env(container)["SKIPLOCK_CONCURRENCY"]["value"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    m = re.fullmatch(
        r"SELECT skiplock\.workers_needed\('(\w+)', (\d+)\)", trigger["metadata"]["query"]
    )
    assert m, trigger["metadata"]["query"]
    assert m[2] == concurrency
    assert m[1] == "default"  # a queue every worker of the base serves
    assert trigger["metadata"]["targetQueryValue"] == "1"
    # KEDA reads the DSN from the target's container, which has it from the Secret
    assert "secretKeyRef" in env(container)[trigger["metadata"]["connectionFromEnv"]]["valueFrom"]


def test_keda_query_runs_on_a_migrated_database(conn: psycopg.Connection) -> None:
    (trigger,) = one(RENDERED["base"], "ScaledObject", "skiplock-worker")["spec"]["triggers"]
    exists = conn.execute(
        "SELECT 1 FROM pg_proc WHERE proname = 'workers_needed'"
        " AND pronamespace = 'skiplock'::regnamespace"
    ).fetchone()
    if not exists:
        pytest.skip("skiplock.workers_needed is not in this schema yet")
    (needed,) = conn.execute(trigger["metadata"]["query"]).fetchone()
    assert int(needed) >= 0


def test_every_secret_the_pods_need_is_in_the_overlay() -> None:
    objects = RENDERED["overlay"]
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    for obj in objects:
        for container in containers(obj):
            for variable in env(container).values():
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                keys = secrets.get(ref["name"], {}).get("stringData", {})
                assert ref.get("optional") or ref["key"] in keys, (ref, obj["metadata"]["name"])
    # the base leaves the Secret to an overlay: credentials never in the shared base
    assert not [o for o in RENDERED["base"] if o["kind"] == "Secret"]


@both
def test_services_budgets_policies_and_monitors_select_the_pods_they_mean(name: str) -> None:
    objects = RENDERED[name]
    api = one(objects, "Deployment", "skiplock-api")
    worker = one(objects, "Deployment", "skiplock-worker")
    migrate = one(objects, "Job", "skiplock-migrate")
    service = one(objects, "Service", "skiplock-api")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(api))
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(worker))
    (port,) = service["spec"]["ports"]
    (api_container,) = containers(api)
    assert port["targetPort"] in [p["name"] for p in api_container["ports"]]
    assert one(objects, "PodDisruptionBudget", "skiplock-api")["spec"]["minAvailable"] >= 1
    for kind_name, pods in (("skiplock-api", api), ("skiplock-worker", worker)):
        budget = one(objects, "PodDisruptionBudget", kind_name)
        assert selects(budget["spec"]["selector"], pod_labels(pods))
    closed = one(objects, "NetworkPolicy", "skiplock-no-ingress")["spec"]
    assert closed["ingress"] == [] and closed["policyTypes"] == ["Ingress"]
    assert selects(closed["podSelector"], pod_labels(migrate))
    assert not selects(closed["podSelector"], pod_labels(worker))
    assert not selects(closed["podSelector"], pod_labels(api))
    # a worker takes connections only on its metrics port, which its PodMonitor scrapes
    (worker_container,) = containers(worker)
    (metrics_port,) = worker_container["ports"]
    scraped = one(objects, "NetworkPolicy", "skiplock-worker-metrics")["spec"]
    assert selects(scraped["podSelector"], pod_labels(worker))
    assert not selects(scraped["podSelector"], pod_labels(api))
    assert [p["port"] for r in scraped["ingress"] for p in r["ports"]] == [
        metrics_port["containerPort"]
    ]
    env = {e["name"]: e.get("value") for e in worker_container["env"]}
    assert env["SKIPLOCK_METRICS_PORT"] == str(metrics_port["containerPort"])
    assert env["SKIPLOCK_METRICS_HOST"] == "0.0.0.0"
    pod_monitor = one(objects, "PodMonitor", "skiplock-worker")["spec"]
    assert selects(pod_monitor["selector"], pod_labels(worker))
    assert [e["port"] for e in pod_monitor["podMetricsEndpoints"]] == [metrics_port["name"]]
    opened = one(objects, "NetworkPolicy", "skiplock-api")["spec"]
    assert selects(opened["podSelector"], pod_labels(api))
    assert [p["port"] for r in opened["ingress"] for p in r["ports"]] == [
        api_container["ports"][0]["containerPort"]
    ]
    monitor = one(objects, "ServiceMonitor", "skiplock-api")["spec"]
    assert selects(monitor["selector"], service["metadata"]["labels"])
    assert [e["port"] for e in monitor["endpoints"]] == [port["name"]]
    assert [e["path"] for e in monitor["endpoints"]] == ["/metrics"]
    for pods in (api, worker, migrate):
        pod = pods["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["serviceAccountName"] == "skiplock"
        for container in containers(pods):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_api_probes_answer_without_a_token(dsn: str) -> None:
    """/health and /ready are routes of the API that `skiplock serve` runs, open with
    auth on (the kubelet has no token), and ready on a migrated database."""
    (container,) = containers(one(RENDERED["base"], "Deployment", "skiplock-api"))
    probes = [container["livenessProbe"], container["readinessProbe"]]
    assert [p["httpGet"]["path"] for p in probes] == ["/health", "/ready"]
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        assert client.get("/api/v1/jobs").status_code == 401  # auth is on
        for probe in probes:
            response = client.get(probe["httpGet"]["path"])
            assert response.status_code == 200, response.text
    for probe in probes:
        assert probe["httpGet"]["port"] == "http"
