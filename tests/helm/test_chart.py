"""The Helm chart, rendered by the real helm binary and checked offline.

Each value set in tests/helm/values is rendered, linted, validated against
the Kubernetes API schemas and read back: the ConfigMap must be a config the
daemon loads, and the pod's probes, ports and security must match it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stopbandit.controller.config import ConfigError, StopbanditConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "stopbandit"
VALUES_DIR = Path(__file__).parent / "values"
VALUE_SETS = ["default", *sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))]
# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest
# kubernetes-validate knows: a field missing from either fails the validation.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
RENDER_KUBE_VERSION = "1.33.0"
DRAIN_BUDGET_S = 30


def _find_helm() -> str | None:
    local = ROOT / ".brokers" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary; CI must have built it, a developer may not have."""
    found = _find_helm()
    if found is None:
        message = "helm not found in .brokers/bin or on PATH: run scripts/install-helm.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Rendered:
    """The manifests of one render, indexed by kind."""

    docs: tuple[dict[str, Any], ...]

    def kinds(self) -> list[str]:
        """The kinds of the manifests, in rendering order."""
        return [d["kind"] for d in self.docs]

    def one(self, kind: str) -> dict[str, Any]:
        """The single manifest of `kind`."""
        found = [d for d in self.docs if d["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def config_text(self) -> str:
        """The daemon's config.yaml as the ConfigMap holds it."""
        return self.one("ConfigMap")["data"]["config.yaml"]

    def pod(self) -> dict[str, Any]:
        """The Deployment's pod spec."""
        return self.one("Deployment")["spec"]["template"]["spec"]

    def container(self) -> dict[str, Any]:
        """The pod's only container."""
        (container,) = self.pod()["containers"]
        return container


def _values_args(value_set: str) -> list[str]:
    return [] if value_set == "default" else ["-f", str(VALUES_DIR / f"{value_set}.yaml")]


def _helm_template(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            helm,
            "template",
            "sb",
            str(CHART),
            "--namespace",
            "ml-serving",
            "--kube-version",
            RENDER_KUBE_VERSION,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@cache
def _render(helm: str, value_set: str) -> Rendered:
    result = _helm_template(helm, *_values_args(value_set))
    assert result.returncode == 0, result.stderr
    return Rendered(tuple(d for d in yaml.safe_load_all(result.stdout) if d))


@pytest.fixture(params=VALUE_SETS)
def rendered(request: pytest.FixtureRequest, helm: str) -> Rendered:
    """The chart rendered with each value set in turn."""
    return _render(helm, request.param)


def _load(rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StopbanditConfig:
    for name in list(os.environ):
        if name.startswith("STOPBANDIT_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.yaml"
    path.write_text(rendered.config_text())
    return load_config(path)


def test_value_sets_cover_the_options():
    """The value sets kept for these tests are the ones the chart's options need."""
    assert {"sasl-secrets", "pvc-checkpoints", "replicas-servicemonitor"} <= set(VALUE_SETS)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm: str, value_set: str):
    """`helm lint --strict` finds nothing to warn about."""
    result = subprocess.run(
        [
            helm,
            "lint",
            "--strict",
            str(CHART),
            "--kube-version",
            RENDER_KUBE_VERSION,
            *_values_args(value_set),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


# The part of the Prometheus Operator's ServiceMonitor CRD the chart uses,
# written from its v1 reference: kubernetes-validate has no schemas for CRDs.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "minProperties": 1,
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$",
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_manifests_validate_against_kubernetes_schemas(rendered: Rendered):
    """Every manifest is valid for the oldest and newest Kubernetes, unknown fields included."""
    for doc in rendered.docs:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_service_monitor_schema_rejects_a_wrong_shape(helm: str):
    """The hand-written ServiceMonitor check is not vacuous."""
    monitor = _render(helm, "replicas-servicemonitor").one("ServiceMonitor")
    broken = {**monitor, "spec": {**monitor["spec"], "endpoints": [{"targetPort": 8080}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR_SCHEMA)


def test_kubernetes_validation_rejects_an_unknown_field(helm: str):
    """Strict validation catches a misspelt field, so passing it means something."""
    deployment = _render(helm, "default").one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[0], strict=True)


def test_rendered_config_loads(rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ConfigMap's config.yaml is a configuration the daemon accepts as it is."""
    config = _load(rendered, tmp_path, monkeypatch)
    assert config.http.host == "0.0.0.0"  # noqa: S104 - probes come from the kubelet
    assert config.arm_index(config.default_arm) is not None


def test_rendered_config_follows_the_values(helm: str, tmp_path: Path, monkeypatch):
    """Values reach the daemon's config: arms, default arm, weights, join window, topics."""
    config = _load(_render(helm, "sasl-secrets"), tmp_path, monkeypatch)
    assert config.default_arm == 0.95
    assert config.reward.token_cost_per_1k == 0.05
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.sasl_username == "stopbandit"
    assert config.kafka.bootstrap_servers == ["b-1.kafka.internal:9096", "b-2.kafka.internal:9096"]
    assert config.http.port == 9100

    config = _load(_render(helm, "replicas-servicemonitor"), tmp_path, monkeypatch)
    assert config.join.wait_s == 600.0
    assert config.exploration.max_explore == 0.1
    assert config.publish.interval_s == 10.0
    assert config.kafka.group_id == "stopbandit-prod"
    assert config.checkpoint.store == "kafka"


def test_default_checkpoints_go_to_kafka(helm: str, tmp_path: Path, monkeypatch):
    """By default state lives in a compacted topic, so partitions can move between pods."""
    rendered = _render(helm, "default")
    assert _load(rendered, tmp_path, monkeypatch).checkpoint.store == "kafka"
    assert "PersistentVolumeClaim" not in rendered.kinds()
    assert rendered.one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_dir_checkpoints_use_one_claim_mounted_where_the_config_says(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The directory store gets a kept PVC, mounted at checkpoint.dir, one pod at a time."""
    rendered = _render(helm, "pvc-checkpoints")
    config = _load(rendered, tmp_path, monkeypatch)
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in rendered.container()["volumeMounts"]}
    volume = volumes[mounts[str(config.checkpoint.dir)]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_existing_claim_is_used_not_created(helm: str, tmp_path: Path):
    """persistence.existingClaim mounts that claim and creates none."""
    values = tmp_path / "v.yaml"
    values.write_text(
        yaml.safe_dump(
            {"config": {"checkpoint": {"store": "dir"}}, "persistence": {"existingClaim": "old"}}
        )
    )
    result = _helm_template(helm, "-f", str(values))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "PersistentVolumeClaim" not in [d["kind"] for d in docs]
    assert "claimName: old" in result.stdout


def test_probes_and_service_use_the_daemon_port(
    rendered: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Probes hit /healthz and /readyz, and every port leads to the daemon's http.port."""
    port = _load(rendered, tmp_path, monkeypatch).http.port
    container = rendered.container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": port}

    def resolve(value: int | str) -> int:
        return named[value] if isinstance(value, str) else value

    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"]["path"] == path
        assert resolve(container[probe]["httpGet"]["port"]) == port

    (service_port,) = rendered.one("Service")["spec"]["ports"]
    assert service_port["port"] == port
    assert resolve(service_port["targetPort"]) == port

    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    if "prometheus.io/scrape" in annotations:
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
    if "ServiceMonitor" in rendered.kinds():
        (endpoint,) = rendered.one("ServiceMonitor")["spec"]["endpoints"]
        assert endpoint["port"] == service_port["name"]
        assert endpoint["path"] == "/metrics"


def test_the_service_selects_the_pods(rendered: Rendered):
    """Service, PodDisruptionBudget and ServiceMonitor select the pods the Deployment makes."""
    pod_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [rendered.one("Service")["spec"]["selector"]]
    selectors.append(rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    if "ServiceMonitor" in rendered.kinds():
        service_labels = rendered.one("Service")["metadata"]["labels"]
        monitor = rendered.one("ServiceMonitor")["spec"]["selector"]["matchLabels"]
        assert monitor.items() <= service_labels.items()
    for selector in selectors:
        assert selector
        assert selector.items() <= pod_labels.items()


def test_security_context_is_restricted(rendered: Rendered):
    """The pod meets the Kubernetes "restricted" Pod Security Standard and a read-only root."""
    pod = rendered.pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert all("hostPath" not in volume for volume in pod["volumes"])
    context = rendered.container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged")
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in rendered.container()["volumeMounts"] if m["mountPath"] == "/tmp")  # noqa: S108
    assert "emptyDir" in volumes[tmp["name"]]


def test_resources_and_grace_period(rendered: Rendered):
    """Requests and limits are set, and the grace period covers the 30 s drain with slack."""
    resources = rendered.container()["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert set(resources["limits"]) >= {"cpu", "memory"}
    assert rendered.pod()["terminationGracePeriodSeconds"] > DRAIN_BUDGET_S


def test_replicas_share_one_consumer_group(helm: str):
    """Scaling out is replicas of one Deployment, with Kafka checkpoints and a PDB."""
    rendered = _render(helm, "replicas-servicemonitor")
    assert rendered.one("Deployment")["spec"]["replicas"] == 4
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert (
        rendered.one("ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    )
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_secrets_come_from_secret_references_only(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """SASL password and signing key are env vars from Secrets; TLS files are a mounted Secret."""
    rendered = _render(helm, "sasl-secrets")
    env = {e["name"]: e for e in rendered.container()["env"]}
    for name, secret in [
        ("STOPBANDIT_KAFKA__SASL_PASSWORD", {"name": "stopbandit-kafka", "key": "sasl-password"}),
        ("STOPBANDIT_PUBLISH__HMAC_KEY", {"name": "stopbandit-signing", "key": "hmac-key"}),
    ]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == secret
    assert "Secret" not in rendered.kinds()

    config = _load(rendered, tmp_path, monkeypatch)
    tls = next(v for v in rendered.pod()["volumes"] if v["name"] == "kafka-tls")
    assert tls["secret"]["secretName"] == "kafka-client-tls"
    (mount,) = [m for m in rendered.container()["volumeMounts"] if m["name"] == "kafka-tls"]
    assert mount["readOnly"] is True
    files = {f"{mount['mountPath']}/{item['path']}" for item in tls["secret"]["items"]}
    assert {str(config.kafka.ssl_cafile), str(config.kafka.ssl_certfile)} <= files
    assert str(config.kafka.ssl_keyfile) in files


def test_the_config_map_holds_no_secret(rendered: Rendered):
    """No secret key, nor any Secret's name or key, appears in the ConfigMap."""
    text = rendered.config_text()
    document = yaml.safe_load(text)
    assert "sasl_password" not in document["kafka"]
    assert "hmac_key" not in document.get("publish", {})
    for forbidden in ("sasl_password", "hmac_key", "stopbandit-kafka", "stopbandit-signing"):
        assert forbidden not in text


def test_secret_values_in_config_are_refused_even_without_the_schema(helm: str, tmp_path: Path):
    """A literal password under config fails the render; the template guards it a second time."""
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"config": {"kafka": {"sasl_password": "hunter2"}}}))
    with_schema = _helm_template(helm, "-f", str(values))
    assert with_schema.returncode != 0
    assert "sasl_password" in with_schema.stderr
    without_schema = _helm_template(helm, "-f", str(values), "--skip-schema-validation")
    assert without_schema.returncode != 0
    assert "secrets" in without_schema.stderr
    assert "hunter2" not in without_schema.stdout


INVALID_VALUES: list[tuple[str, dict[str, Any], str]] = [
    (
        "negative token cost",
        {"config": {"reward": {"token_cost_per_1k": -0.01}}},
        "token_cost_per_1k",
    ),
    ("zero em weight", {"config": {"reward": {"em_weight": 0}}}, "em_weight"),
    ("empty arms", {"config": {"arms": []}}, "arms"),
    ("one arm", {"config": {"arms": [1.0], "default_arm": 1.0}}, "arms"),
    ("arm above 1", {"config": {"arms": [0.5, 1.5]}}, "arms"),
    ("duplicate arms", {"config": {"arms": [0.5, 0.5, 1.0]}}, "arms"),
    ("descending arms", {"config": {"arms": [1.0, 0.9, 0.5]}}, "strictly ascending"),
    ("default arm not an arm", {"config": {"default_arm": 0.93}}, "default_arm"),
    ("reference arm not an arm", {"config": {"reference_arm": 0.42}}, "reference_arm"),
    ("too many replicas", {"replicaCount": 1000}, "replicaCount"),
    ("negative replicas", {"replicaCount": -2}, "replicaCount"),
    ("fractional replicas", {"replicaCount": 1.5}, "replicaCount"),
    ("replicas as text", {"replicaCount": "two"}, "replicaCount"),
    (
        "several replicas on one checkpoint volume",
        {"replicaCount": 2, "config": {"checkpoint": {"store": "dir"}}},
        "replicaCount",
    ),
    ("unknown checkpoint store", {"config": {"checkpoint": {"store": "s3"}}}, "store"),
    (
        "SASL without a password secret",
        {
            "config": {
                "kafka": {
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "PLAIN",
                    "sasl_username": "u",
                }
            }
        },
        "kafkaSaslPassword",
    ),
    ("HMAC key as a value", {"config": {"publish": {"hmac_key": "k"}}}, "hmac_key"),
    ("misspelt config key", {"config": {"join": {"wait": 10}}}, "wait"),
    ("port out of range", {"config": {"http": {"port": 70000}}}, "port"),
    ("grace shorter than the drain", {"terminationGracePeriodSeconds": 20}, "terminationGrace"),
    ("negative join window", {"config": {"join": {"wait_s": -1}}}, "wait_s"),
    ("TLS cert without key", {"secrets": {"kafkaTls": {"name": "t", "certKey": "c"}}}, "keyKey"),
    ("unknown top-level value", {"replicas": 3}, "replicas"),
]


@pytest.mark.parametrize(
    ("values", "field"),
    [pytest.param(v, f, id=name) for name, v, f in INVALID_VALUES],
)
def test_invalid_values_fail_the_render(
    helm: str, tmp_path: Path, values: dict[str, Any], field: str
):
    """A values file the daemon could not run with stops `helm template`, naming the field."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    result = _helm_template(helm, "-f", str(path))
    assert result.returncode != 0, f"rendered although invalid:\n{result.stdout[:2000]}"
    assert field in result.stderr, result.stderr


def test_the_daemon_agrees_with_the_schema_on_arms(tmp_path: Path, monkeypatch):
    """The cases the template refuses are the ones load_config refuses too."""
    for name in list(os.environ):
        if name.startswith("STOPBANDIT_"):
            monkeypatch.delenv(name)
    for document in (
        {"arms": [1.0, 0.9, 0.5]},
        {"default_arm": 0.93},
        {"reward": {"token_cost_per_1k": -0.01}},
    ):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(document))
        with pytest.raises(ConfigError):
            load_config(path)


def test_config_schema_matches_the_daemon_config_model():
    """values.schema.json's `config` is what scripts/chart_schema.py derives from config.py now."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_zero_replicas_pauses_the_controller(helm: str, tmp_path: Path):
    """A replicaCount of 0 renders: a pause, in which nodes keep their last policies."""
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"replicaCount": 0}))
    result = _helm_template(helm, "-f", str(values))
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 0
