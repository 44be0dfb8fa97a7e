"""The deployment files of docs/deployment.md hold together: the compose ``cluster`` profile
(three RabbitMQ nodes, two esb instances on them) and the Kubernetes sketch (RabbitMQ Cluster
Operator, esb Deployment, KEDA scaling), each parsed and checked against the shapes it uses —
and the esb configurations they carry load with esb's own loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from esb.bus.config.loader import load_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with test values."""
    return re.sub(r"\$\{([A-Z_]+)(?::[-?]([^}]*))?\}",
                  lambda m: "secret" if "?" in m.group(0) else (m.group(2) or "x"), text)


def test_compose_cluster_profile_is_three_nodes_and_two_instances() -> None:
    services = _compose()["services"]
    nodes = {n: s for n, s in services.items() if s.get("profiles") == ["cluster"]
             and "rabbitmq" in s.get("image", "")}
    instances = {n: s for n, s in services.items() if s.get("profiles") == ["cluster"]
                 and s.get("build") == "."}
    assert sorted(nodes) == ["rabbit1", "rabbit2", "rabbit3"]
    assert sorted(instances) == ["esb-a", "esb-b"]
    # the default profile is untouched: one broker and one daemon
    assert not services["rabbitmq"].get("profiles") and not services["esb"].get("profiles")
    cookies = {s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in nodes.values()}
    assert len(cookies) == 1, "the nodes of one cluster share one cookie"
    assert {s["hostname"] for s in nodes.values()} == set(nodes)
    conf = (ROOT / "deploy" / "cluster" / "rabbitmq.conf").read_text()
    settings = dict(line.split(" = ", 1) for line in conf.splitlines()
                    if line and not line.startswith("#"))
    assert settings["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert {v for k, v in settings.items() if k.startswith("cluster_formation.classic_config")} \
        == {f"rabbit@{n}" for n in nodes}
    assert settings["cluster_partition_handling"] == "pause_minority"
    for name, node in nodes.items():
        mounts = [v.split(":")[0] for v in node["volumes"]]
        assert "./deploy/cluster/rabbitmq.conf" in mounts
        assert f"{name}-data" in mounts and f"{name}-data" in _compose()["volumes"]
        assert node["healthcheck"]["test"]
    ports = set()
    for inst in instances.values():
        assert set(inst["depends_on"]) == set(nodes)
        assert all(d["condition"] == "service_healthy" for d in inst["depends_on"].values())
        urls = _interpolate(inst["environment"]["ESB_BUS_URL"]).split(",")
        assert [re.search(r"@(\w+):5672", u).group(1) for u in urls] == sorted(nodes)
        assert "/readyz" in " ".join(inst["healthcheck"]["test"])
        assert inst["stop_signal"] == "SIGTERM"
        host, port, _ = inst["ports"][0].rsplit(":", 2)
        assert host == "127.0.0.1"  # like the default profile: this machine only
        ports.add(port)
    assert len(ports) == 2


def test_compose_cluster_config_loads_with_the_cluster_defaults(tmp_path: Path) -> None:
    esb = _compose()["services"]["esb-a"]
    url = _interpolate(esb["environment"]["ESB_BUS_URL"])
    loaded = load_config(ROOT / "deploy" / "cluster" / "esb.yaml",
                         env={"ESB_BUS_URL": url, "ESB_ADMIN_TOKEN": "t" * 32})
    cfg = loaded.config
    assert len(cfg.bus.nodes) == 3 and cfg.bus.queue_type == "quorum"
    assert cfg.destinations["erp"].delivery.scope == "fleet"
    grace = int(esb["stop_grace_period"].rstrip("s"))
    assert cfg.stop_timeout < grace, "the container must not be killed mid-stop"


def _k8s() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _k8s() if d["kind"] == kind]


def test_kubernetes_manifests_have_the_shapes_they_use() -> None:
    for doc in _k8s():
        assert (isinstance(doc.get("apiVersion"), str) and "/" in doc["apiVersion"]) \
            or doc["apiVersion"] == "v1", doc
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"] == "esb"
    (rabbit,) = _by_kind("RabbitmqCluster")
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbit["spec"]["replicas"] == 3
    assert "pause_minority" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    (deploy,) = _by_kind("Deployment")
    assert deploy["apiVersion"] == "apps/v1"
    spec = deploy["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert f"{rabbit['metadata']['name']}-default-user" in secrets
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) <= set(volumes)
    (config_map,) = _by_kind("ConfigMap")
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    config_file = container["args"][container["args"].index("--config") + 1]
    assert config_file == f"{mounts['config']}/esb.yaml"
    (service,) = _by_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (scaled,) = _by_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] <= spec["replicas"] <= \
        scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
    (auth,) = _by_kind("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert config_map["data"]["esb.yaml"]
    _check_graceful_stop(pod, config_map)
    _check_scaled_queue(trigger, config_map)


def _config(config_map: dict[str, Any]) -> Any:
    raw = yaml.safe_load(config_map["data"]["esb.yaml"])
    raw["bus"]["url"] = "amqp://u:p@esb-rabbit:5672/"
    raw["admin"]["token"] = "t" * 32
    return validate_config(raw, None, base_dir=ROOT).config


def _check_graceful_stop(pod: dict[str, Any], config_map: dict[str, Any]) -> None:
    cfg = _config(config_map)
    assert cfg.stop_timeout < pod["terminationGracePeriodSeconds"]


def _check_scaled_queue(trigger: dict[str, Any], config_map: dict[str, Any]) -> None:
    cfg = _config(config_map)
    from esb.bus.broker.topology import Topology

    queues = {Topology(cfg.bus.prefix).queue(f"dest.{d}") for d in cfg.destinations}
    assert trigger["metadata"]["queueName"] in queues
    assert cfg.bus.queue_type == "quorum"
