"""deploy/k8s without a cluster: every kustomization rendered by ``kubectl kustomize``,
every object validated by ``kubernetes-validate --strict`` (bundled schemas, offline),
the values that matter asserted, and the ConfigMap's config loaded by the real
``sse-hub check-config`` with the kubelet's service-link variables around it.

The CRDs (ServiceMonitor, PrometheusRule, HTTPRoute) have no bundled schema:
kubernetes-validate raises ``SchemaNotFoundError`` for them, so they are checked field by
field instead (the PrometheusRule's rules: tests/e2e/test_observability.py).
What cannot be checked offline (admission, a controller's behaviour, a real rollout) is
listed in deploy/README.md.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from sse_hub.config.settings import load_settings
from sse_hub.ops.server import HANDLER_GRACE_SECONDS
from tests.support.cli import run_sse_hub
from tests.support.kustomize import K8S, Obj, only, render, with_component
from tests.support.paths import ROOT

# One current version, and the oldest the manifests support (preStop's sleep action is on
# by default from 1.30).
K8S_VERSION = "1.35.0"
OLDEST_K8S_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "HTTPRoute"}
# Seconds left for the broker's stop and the process's exit, on top of the drain.
GRACE_MARGIN_SECONDS = 5


# -- rendering -----------------------------------------------------------------------------


OVERLAYS = sorted(path.parent for path in (K8S / "overlays").glob("*/kustomization.yaml"))
COMPONENTS = sorted(path.parent for path in (K8S / "components").glob("*/kustomization.yaml"))
TARGETS = [K8S, *OVERLAYS, *COMPONENTS]


@pytest.fixture(scope="module", params=TARGETS, ids=lambda path: str(path.relative_to(K8S)).replace(".", "default"))
def rendered_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    target: Path = request.param
    if target in COMPONENTS:
        return render(with_component(tmp_path_factory.mktemp("overlay"), target))
    return render(target)


@pytest.fixture
def rendered(rendered_once: list[Obj]) -> list[Obj]:
    """Each way to apply deploy/k8s: the default, every overlay, base + each component
    (rendered once per module; each test gets its own copy)."""
    return copy.deepcopy(rendered_once)


def hub_deployment(objects: list[Obj]) -> Obj:
    return only(objects, "Deployment", "sse-hub")


def hub_container(objects: list[Obj]) -> Obj:
    containers: list[Obj] = hub_deployment(objects)["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def hub_config(objects: list[Obj]) -> Obj:
    """The config.yaml of the ConfigMap the hub's pods mount."""
    volumes = hub_deployment(objects)["spec"]["template"]["spec"]["volumes"]
    name = next(volume["configMap"]["name"] for volume in volumes if "configMap" in volume)
    config: Obj = yaml.safe_load(only(objects, "ConfigMap", name)["data"]["config.yaml"])
    return config


def env_of(container: Obj) -> dict[str, Obj]:
    return {item["name"]: item for item in container.get("env", [])}


# -- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [K8S_VERSION, OLDEST_K8S_VERSION])
def test_every_object_passes_strict_schema_validation(rendered: list[Obj], version: str) -> None:
    without_schema = set()
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            without_schema.add(obj["kind"])
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {error.message} (Kubernetes {version})")
    # Only the CRDs go unvalidated, and the tests below check those by hand.
    assert without_schema <= CRD_KINDS


def test_the_secret_example_is_valid_and_applied_by_no_kustomization() -> None:
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "secret.example" not in "".join(
            line for line in kustomization.read_text().splitlines(keepends=True) if not line.lstrip().startswith("#")
        ), kustomization
    assert "Secret" not in {obj["kind"] for obj in render(K8S)}


# -- the hub's Deployment --------------------------------------------------------------------


def test_probes_ask_readyz_for_readiness_and_healthz_for_liveness(rendered: list[Obj]) -> None:
    container = hub_container(rendered)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": hub_config(rendered)["server"]["port"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_grace_period_covers_prestop_the_drain_and_a_margin(rendered: list[Obj]) -> None:
    pod = hub_deployment(rendered)["spec"]["template"]["spec"]
    pre_stop = hub_container(rendered)["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown_timeout = hub_config(rendered)["server"]["shutdown_timeout"]
    assert pre_stop >= 5, "endpoints need a few seconds to drop the pod before SIGTERM"
    needed = pre_stop + shutdown_timeout + HANDLER_GRACE_SECONDS + GRACE_MARGIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_pods_get_no_service_links_and_roll_without_losing_capacity(rendered: list[Obj]) -> None:
    deployment = hub_deployment(rendered)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert hub_container(rendered)["args"] == ["serve"], "one process per pod: scale with replicas"


def dockerfile_uid() -> int:
    text = (ROOT / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+)$", text, re.MULTILINE)
    assert f"--uid {user} " in text, "USER is the uid useradd creates"
    return int(user)


def test_pods_run_as_the_images_non_root_user_with_nothing_extra(rendered: list[Obj]) -> None:
    pod_security = hub_deployment(rendered)["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == dockerfile_uid() != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = hub_container(rendered)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_credentials_come_from_the_secret_never_inline(rendered: list[Obj]) -> None:
    env = env_of(hub_container(rendered))
    for name in ("SSE_HUB_BROKER__REDIS_URL", "SSE_HUB_AUTH__PUBLISH_TOKENS", "SSE_HUB_AUTH__ADMIN_TOKENS"):
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "sse-hub", name
    config = hub_config(rendered)
    assert "redis_url" not in config["broker"]
    assert "auth" not in config


def test_resources_request_cpu_and_memory_and_cap_memory_only(rendered: list[Obj]) -> None:
    resources = hub_container(rendered)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}, "no CPU limit: throttling delays every stream"


def replica_floor(objects: list[Obj]) -> int:
    """The fewest hub pods: the Deployment's replicas, or the autoscaler's minimum."""
    replicas = hub_deployment(objects)["spec"].get("replicas")
    if replicas is None:
        return int(only(objects, "HorizontalPodAutoscaler", "sse-hub")["spec"]["minReplicas"])
    return int(replicas)


def broker_problem(objects: list[Obj]) -> str | None:
    if replica_floor(objects) > 1 and hub_config(objects).get("broker", {}).get("backend", "memory") == "memory":
        return "several replicas on the memory broker: each pod would be a separate hub"
    return None


def test_several_replicas_never_run_on_the_memory_broker(rendered: list[Obj]) -> None:
    assert broker_problem(rendered) is None
    # The check itself: the same objects with the memory broker are refused.
    configmap = only(rendered, "ConfigMap")
    config = hub_config(rendered)
    config["broker"]["backend"] = "memory"
    configmap["data"]["config.yaml"] = yaml.safe_dump(config)
    assert replica_floor(rendered) > 1 and broker_problem(rendered) is not None


# -- Service, PDB and the optional parts ------------------------------------------------------


def selects_hub_pods(selector: dict[str, str], objects: list[Obj]) -> bool:
    labels = hub_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


def test_service_has_no_session_affinity_and_reaches_the_pods(rendered: list[Obj]) -> None:
    service = only(rendered, "Service", "sse-hub")
    assert service["spec"].get("sessionAffinity", "None") == "None"
    assert selects_hub_pods(service["spec"]["selector"], rendered)
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_a_disruption_budget_keeps_all_but_one_pod(rendered: list[Obj]) -> None:
    budget = only(rendered, "PodDisruptionBudget", "sse-hub")
    assert budget["spec"]["maxUnavailable"] == 1
    assert selects_hub_pods(budget["spec"]["selector"]["matchLabels"], rendered)
    assert replica_floor(rendered) >= 2


def service_port(objects: list[Obj], name: str) -> Obj:
    ports = only(objects, "Service", "sse-hub")["spec"]["ports"]
    return next(port for port in ports if name in (port["name"], port["port"]))


def test_ingress_pins_the_streaming_settings_for_ingress_nginx(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, K8S / "components" / "ingress-nginx"))
    ingress = only(objects, "Ingress", "sse-hub")
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-buffering"] == "off"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 3600
    assert int(annotations[prefix + "proxy-send-timeout"]) >= 3600
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "sse-hub" and service_port(objects, backend["port"]["name"])


def test_httproute_sends_everything_to_the_service_without_a_request_timeout(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, K8S / "components" / "httproute"))
    route = only(objects, "HTTPRoute", "sse-hub")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] and route["spec"]["hostnames"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    (backend,) = rule["backendRefs"]
    assert backend["name"] == "sse-hub" and service_port(objects, backend["port"])
    assert rule["timeouts"] == {"request": "0s"}


def test_servicemonitor_scrapes_metrics_with_the_admin_token(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, K8S / "components" / "servicemonitor"))
    monitor = only(objects, "ServiceMonitor", "sse-hub")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service_labels = only(objects, "Service", "sse-hub")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert service_port(objects, endpoint["port"]) and endpoint["path"] == "/metrics"
    admin_ref = env_of(hub_container(objects))["SSE_HUB_AUTH__ADMIN_TOKENS"]["valueFrom"]["secretKeyRef"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": admin_ref}


def test_the_autoscaler_owns_the_replica_count(tmp_path: Path) -> None:
    objects = render(with_component(tmp_path, K8S / "components" / "hpa"))
    autoscaler = only(objects, "HorizontalPodAutoscaler", "sse-hub")
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sse-hub"}
    assert "replicas" not in hub_deployment(objects)["spec"]
    assert autoscaler["spec"]["minReplicas"] >= 2


def test_the_redis_example_runs_one_official_redis_the_secret_points_at() -> None:
    objects = render(K8S / "overlays" / "redis-example")
    redis = only(objects, "Deployment", "redis")
    assert redis["spec"]["replicas"] == 1
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"redis:[0-9.]+", container["image"]), "the official image, pinned"
    url = only(objects, "Secret", "sse-hub")["data"]["redis-url"]
    service = only(objects, "Service", "redis")
    assert decode(url) == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"


# -- the config, as the pod's process reads it ------------------------------------------------


def decode(value: str) -> str:
    return base64.b64decode(value).decode()


def secret_values(objects: list[Obj]) -> dict[str, str]:
    """The Secret the overlay makes, else the example's values."""
    made = [obj for obj in objects if obj["kind"] == "Secret" and obj["metadata"]["name"] == "sse-hub"]
    if made:
        return {key: decode(value) for key, value in made[0]["data"].items()}
    example: dict[str, str] = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"]
    return example


def container_env(objects: list[Obj]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (values and secretKeyRefs)."""
    secrets = secret_values(objects)
    env = {}
    for name, item in env_of(hub_container(objects)).items():
        env[name] = item["value"] if "value" in item else secrets[item["valueFrom"]["secretKeyRef"]["key"]]
    return env


def service_link_variables(objects: list[Obj]) -> Iterator[tuple[str, str]]:
    """What the kubelet injects for each Service (pkg/kubelet/envvars/envvars.go), as if
    enableServiceLinks were on: the hub must start even then."""
    for number, service in enumerate(obj for obj in objects if obj["kind"] == "Service"):
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        host = f"10.96.0.{10 + number}"
        first = service["spec"]["ports"][0]
        yield f"{prefix}_SERVICE_HOST", host
        yield f"{prefix}_SERVICE_PORT", str(first["port"])
        yield f"{prefix}_PORT", f"tcp://{host}:{first['port']}"
        for port in service["spec"]["ports"]:
            if port.get("name"):
                yield f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}", str(port["port"])
            tcp = f"{prefix}_PORT_{port['port']}_TCP"
            yield tcp, f"tcp://{host}:{port['port']}"
            yield f"{tcp}_PROTO", "tcp"
            yield f"{tcp}_PORT", str(port["port"])
            yield f"{tcp}_ADDR", host


def test_check_config_accepts_the_configmap_with_the_kubelets_variables(rendered: list[Obj], tmp_path: Path) -> None:
    env = container_env(rendered)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(hub_config(rendered)))
    env["SSE_HUB_CONFIG"] = str(config_file)
    links = dict(service_link_variables(rendered))
    assert "SSE_HUB_PORT" in links and "SSE_HUB_SERVICE_HOST" in links
    result = run_sse_hub("check-config", env={**env, **links, "KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    # What the pod runs with: Redis from the Secret, tokens set.
    settings = load_settings(environ={**env, **links})
    assert settings.broker.backend == "redis"
    assert settings.broker.redis_url == secret_values(rendered)["redis-url"]
    assert settings.auth.publish_tokens and settings.auth.admin_tokens
