"""The Kubernetes manifests of every variant agree with each other, with the Dockerfile's image
and with the settings: the kustomization, names and labels, images, locked-down pods, probes and
graceful stops, the migration Job, the purge CronJob, the worker, the HPA, the connection budget
and the Secret example.
"""

import re
from collections.abc import Iterator, Mapping

from deploy_files import (
    K8S_DIR,
    KUSTOMIZATION,
    WORKER_COMMAND,
    Dockerfile,
    Variant,
    is_manifest,
    pod_spec,
    settings_env_names,
)
from helpers import HEARTBEAT_FILE

# uvicorn reads these itself (Dockerfile, ConfigMap); they need no Settings field.
UVICORN_ENV = frozenset({"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"})
# ConfigMap keys the manifests must set.
CONFIGMAP_KEYS = frozenset(
    {
        "CURRENT_ENVIRONMENT",
        "LOG_LEVEL",
        "WEB_CONCURRENCY",
        "FORWARDED_ALLOW_IPS",
        "DB_POOL_SIZE",
        "DB_MAX_OVERFLOW",
        "DB_MAX_CONNECTIONS",
        "MAX_REPLICAS",
        "SMTP_HOST",
        "EMAIL_FROM",
        "FRONTEND_URL",
    }
)
# Kubernetes object names: DNS-1123 subdomains; Services and Jobs (whose name is also a label
# value) at most 63 characters.
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SECRET_EXAMPLE = K8S_DIR + "secret.example.yaml"
B2_SECRETS = ("B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY", "B2_BUCKET_NAME")
PURGE_COMMAND = ["python", "-m", "app.cli", "purge-expired"]


def pre_stop_sleep(container: Mapping) -> int:
    """Seconds of the preStop hook's sleep (a `sleep` action or `exec: sleep N`), else 0."""
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep" and command[1].isdigit():
        return int(command[1])
    return 0


def template_labels(doc: Mapping) -> Mapping:
    template = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return template["template"]["metadata"]["labels"]


def heartbeat_probe(container: Mapping, kind: str) -> Iterator[str]:
    """The worker's probe: a command that fails once the heartbeat file is stale."""
    command = container.get(kind, {}).get("exec", {}).get("command", [])
    script = command[-1] if command else ""
    if command[:2] != ["python", "-c"] or HEARTBEAT_FILE not in script or "getmtime" not in script:
        yield f"worker {kind} {command} does not check the age of {HEARTBEAT_FILE}"


def check_kubernetes(variant: Variant, image: Dockerfile, settings: set[str]) -> Iterator[str]:
    files = variant.files
    manifests = sorted(rel for rel in files if is_manifest(rel))
    kustomization = variant.yaml(KUSTOMIZATION)
    listed = sorted(K8S_DIR + name for name in kustomization.get("resources", []))
    expected = sorted(rel for rel in manifests if rel != SECRET_EXAMPLE)
    if listed != expected:
        yield f"kustomization resources {listed} != the manifests {expected}"
    docs = {rel: variant.yaml(rel) for rel in manifests}
    by_kind: dict[str, list[dict]] = {}
    for doc in docs.values():
        by_kind.setdefault(doc["kind"], []).append(doc)
    kinds = {kind: len(found) for kind, found in by_kind.items()}
    redis = bool(variant.answers["use_redis"])
    wanted_kinds = dict.fromkeys(
        ["ConfigMap", "CronJob", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget"], 1
    ) | {"Deployment": 2 if redis else 1, "Secret": 1, "Service": 1}
    if kinds != wanted_kinds:
        yield f"manifest kinds {kinds} != {wanted_kinds}"
        return
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind["Deployment"]
    }
    deployment, worker = deployments.get("api"), deployments.get("worker")
    if deployment is None or (worker is None) == redis:
        wanted = "api and worker" if redis else "api"
        yield f"Deployments by component {sorted(deployments)} (want {wanted})"
        return
    (job,), (cronjob,) = by_kind["Job"], by_kind["CronJob"]
    workloads = [deployment, job, cronjob, *([worker] if worker else [])]
    (configmap,), (secret,) = by_kind["ConfigMap"], by_kind["Secret"]
    (hpa,), (pdb,), (service,) = (
        by_kind["HorizontalPodAutoscaler"],
        by_kind["PodDisruptionBudget"],
        by_kind["Service"],
    )
    config = configmap["data"]
    secrets = secret.get("stringData", {})
    name = deployment["metadata"]["name"]
    for doc in docs.values():
        doc_name = doc["metadata"]["name"]
        short = doc["kind"] in {"Service", "Job"}
        if not DNS_1123.fullmatch(doc_name) or len(doc_name) > (63 if short else 253):
            yield f"{doc['kind']} name {doc_name!r} is not a valid Kubernetes name"
        for key, value in doc["metadata"].get("labels", {}).items():
            if len(value) > 63:
                yield f"{doc['kind']} label {key} is over 63 characters"

    # Images: the kustomization's image name is what the Deployment and the Job run.
    images = {image_entry["name"] for image_entry in kustomization.get("images", [])}
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            if {container["image"]} != images:
                yield f"{workload['kind']} image {container['image']} != kustomization {images}"

    # The pods: the image's user, a locked-down container, env from the ConfigMap and Secret.
    for workload in workloads:
        kind = workload["kind"]
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        wanted_pod = {
            "runAsNonRoot": True,
            "runAsUser": image.user[0],
            "runAsGroup": image.user[1],
            "fsGroup": image.user[1],
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for key, value in wanted_pod.items():
            if pod.get(key) != value:
                yield f"{kind} pod securityContext.{key} = {pod.get(key)!r} (want {value!r})"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            sc = container.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                yield f"{kind} container root filesystem is writable"
            if sc.get("allowPrivilegeEscalation") is not False:
                yield f"{kind} container allows privilege escalation"
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                yield f"{kind} container keeps capabilities"
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):  # noqa: S108
                yield f"{kind} container has no emptyDir on /tmp"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(part, {})):
                    yield f"{kind} container lacks cpu/memory {part}"
            refs = {
                ("configMapRef" if "configMapRef" in ref else "secretRef"): next(
                    iter(ref.values())
                )["name"]
                for ref in container.get("envFrom", [])
            }
            # The whole Secret for the API only; the others get the keys they use.
            wanted_refs = {"configMapRef": configmap["metadata"]["name"]}
            wanted_keys: set[str] = set()
            if workload is deployment:
                wanted_refs["secretRef"] = secret["metadata"]["name"]
            elif workload is worker:
                wanted_keys = {"DATABASE_URL", "REDIS_URL", "SMTP_USER", "SMTP_PASSWORD"}
            else:
                wanted_keys = {"DATABASE_URL"}
            if refs != wanted_refs:
                yield f"{kind} envFrom {refs} != {wanted_refs}"
            keys = {
                entry["name"]: entry["valueFrom"]["secretKeyRef"]
                for entry in container.get("env", [])
                if "secretKeyRef" in entry.get("valueFrom", {})
            }
            if set(keys) != wanted_keys or any(
                ref["name"] != secret["metadata"]["name"] or ref["key"] != variable
                for variable, ref in keys.items()
            ):
                yield f"{kind} takes {keys} from the Secret (want {sorted(wanted_keys)})"

    # The API container: port, probes, graceful stop.
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if list(ports.values()) != [image.port]:
        yield f"Deployment container ports {ports} != the image's EXPOSE {image.port}"
    probes = {
        kind: container.get(kind, {}).get("httpGet", {})
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    wanted_paths = {
        "startupProbe": "/health",
        "livenessProbe": "/health",
        "readinessProbe": "/health/ready",
    }
    for kind, path in wanted_paths.items():
        if probes[kind].get("path") != path:
            yield f"Deployment {kind} path {probes[kind].get('path')!r} != {path!r}"
        if ports.get(probes[kind].get("port")) != image.port and probes[kind].get("port") != (
            image.port
        ):
            yield f"Deployment {kind} port {probes[kind].get('port')!r} is not the app's"
    health = variant.files["app/api/health.py"]
    if 'prefix="/health"' not in health or '@router.get("/ready"' not in health:
        yield "app/api/health.py no longer serves /health and /health/ready"
    if deployment["spec"].get("replicas") != 2:
        yield f"Deployment replicas {deployment['spec'].get('replicas')} != 2"
    grace = spec.get("terminationGracePeriodSeconds", 30)
    sleep_seconds = pre_stop_sleep(container)
    graceful = int(image.cmd[image.cmd.index("--timeout-graceful-shutdown") + 1])
    if sleep_seconds <= 0 or sleep_seconds + graceful >= grace:
        yield (
            f"preStop sleep {sleep_seconds} s + uvicorn's graceful shutdown {graceful} s must "
            f"be under terminationGracePeriodSeconds {grace}"
        )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    if not selector.items() <= pod_labels.items():
        yield "Deployment selector does not match its pods"
    for other, labels in [
        ("Service", service["spec"]["selector"]),
        ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"]),
    ]:
        if labels != selector:
            yield f"{other} selects {labels}, the Deployment's pods are {selector}"
    for other in workloads[1:]:
        if selector.items() <= template_labels(other).items():
            yield f"the Deployment's selector also matches the {other['kind']}'s pods"
    target = service["spec"]["ports"][0]["targetPort"]
    if ports.get(target) != image.port and target != image.port:
        yield f"Service targetPort {target!r} is not the container's port"

    # The migration Job.
    (migrate,) = pod_spec(job)["containers"]
    if migrate.get("command") != ["alembic", "upgrade", "head"]:
        yield f"Job command {migrate.get('command')}"
    if pod_spec(job).get("restartPolicy") != "Never":
        yield "Job restartPolicy is not Never"
    if len(job["metadata"]["name"]) > 63:
        yield f"Job name {job['metadata']['name']} is over 63 characters"
    if "initContainers" in spec:
        yield "Deployment has init containers: migrations belong to the Job"

    # The purge CronJob: one run at a time, the CLI command that exists.
    (purge,) = pod_spec(cronjob)["containers"]
    if purge.get("command") != PURGE_COMMAND:
        yield f"CronJob command {purge.get('command')} != {PURGE_COMMAND}"
    if f'"{PURGE_COMMAND[-1]}"' not in variant.files["app/cli.py"]:
        yield f"app/cli.py has no {PURGE_COMMAND[-1]} command"
    if cronjob["spec"].get("concurrencyPolicy") != "Forbid":
        yield "CronJob runs may overlap (concurrencyPolicy is not Forbid)"
    if pod_spec(cronjob).get("restartPolicy") not in {"Never", "OnFailure"}:
        yield "CronJob pods restart for ever"
    if len(cronjob["metadata"]["name"]) > 52:
        yield f"CronJob name {cronjob['metadata']['name']} is over 52 characters"

    # The job workers: one process per pod, a heartbeat probe, a graceful stop within the grace.
    if worker is not None:
        worker_spec = pod_spec(worker)
        (runner,) = worker_spec["containers"]
        command = runner.get("command", [])
        if command[: len(WORKER_COMMAND)] != WORKER_COMMAND:
            yield f"worker command {command} does not start with {WORKER_COMMAND}"
        if "ports" in runner or "readinessProbe" in runner:
            yield "the worker serves no HTTP: no ports, no readiness probe"
        for probe in ("startupProbe", "livenessProbe"):
            yield from heartbeat_probe(runner, probe)
        wait = (
            int(command[command.index("--wait-tasks-timeout") + 1])
            if "--wait-tasks-timeout" in command
            else None
        )
        if wait is None or wait >= worker_spec.get("terminationGracePeriodSeconds", 30):
            yield f"worker --wait-tasks-timeout {wait} is not within its grace period"
        if '"worker-heartbeat"' not in variant.files["app/core/config.py"]:
            yield f"WORKER_HEARTBEAT_FILE's default is not {HEARTBEAT_FILE}"

    # HPA, ConfigMap, connection budget.
    if hpa["spec"]["scaleTargetRef"] != {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }:
        yield f"HPA targets {hpa['spec']['scaleTargetRef']}"
    max_replicas = hpa["spec"]["maxReplicas"]
    if str(max_replicas) != config.get("MAX_REPLICAS"):
        yield f"HPA maxReplicas {max_replicas} != MAX_REPLICAS {config.get('MAX_REPLICAS')}"
    if hpa["spec"].get("minReplicas", 1) > deployment["spec"]["replicas"]:
        yield "HPA minReplicas above the Deployment's replicas"
    missing = CONFIGMAP_KEYS - set(config)
    if missing:
        yield f"ConfigMap lacks {sorted(missing)}"
        return
    if config["CURRENT_ENVIRONMENT"] != "prod" or config["LOG_LEVEL"] != "INFO":
        yield "ConfigMap must set CURRENT_ENVIRONMENT=prod and LOG_LEVEL=INFO"
    if any(not isinstance(value, str) for value in config.values()):
        yield "ConfigMap values must be strings"
        return
    budget = (int(config["DB_POOL_SIZE"]) + int(config["DB_MAX_OVERFLOW"])) * int(
        config["WEB_CONCURRENCY"]
    )
    budget *= int(config["MAX_REPLICAS"])
    if budget > int(config["DB_MAX_CONNECTIONS"]):
        yield f"connection budget {budget} > DB_MAX_CONNECTIONS {config['DB_MAX_CONNECTIONS']}"

    # The Secret example: the right keys, placeholders only; and every env name is read.
    answers = variant.answers
    wanted_secrets = {"SECRET_KEY", "DATABASE_URL", "SMTP_USER", "SMTP_PASSWORD"}
    wanted_secrets |= {"REDIS_URL"} if answers["use_redis"] else set()
    wanted_secrets |= set(B2_SECRETS) if answers["use_b2_storage"] else set()
    if set(secrets) != wanted_secrets:
        yield f"Secret example keys {sorted(secrets)} != {sorted(wanted_secrets)}"
    if secret.get("data") or secrets.get("SECRET_KEY") != "change-me":
        yield "the Secret example must hold placeholders only (SECRET_KEY: change-me)"
    for key in sorted(set(secrets) - {"SECRET_KEY"}):
        if not re.search(r"change-me|\b[A-Z]+_(?:PASSWORD|HOST)\b", secrets[key]):
            yield f"Secret example {key} does not look like a placeholder"
    allowed = settings | UVICORN_ENV
    for source, names in [("ConfigMap", set(config)), ("Secret example", set(secrets))]:
        yield from (f"{source} sets {n}, which no setting reads" for n in sorted(names - allowed))


def test_kubernetes_manifests_agree(variants):
    problems = []
    for variant in variants:
        found = []
        if variant.answers["database"] == "postgresql":
            settings = settings_env_names(variant.files["app/core/config.py"])
            image = Dockerfile.parse(variant.files["Dockerfile"])
            found += check_kubernetes(variant, image, settings)
        elif any(rel.startswith("deploy/") for rel in variant.files):
            found.append("deploy/ rendered without PostgreSQL")
        problems += [f"{variant.name}: {problem}" for problem in found]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)
