"""The deployment files of every combination of answers, shared by the test_deploy_*.py modules.

The files are rendered with cookiecutter's Jinja environment for each combination
(`render_files`; test_render_deployment_files_like_cookiecutter checks that it matches a real
render). Combinations that render the same deployment files (they do not depend on the license)
form one Variant, checked once; conftest.py's session fixture `variants` builds them once.
"""

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml
from helpers import all_combinations, full_answers, render_files, variant_id

# The Kubernetes version the manifests are validated against; the rendered Makefile and
# .pre-commit-config.yaml must name the same one.
KUBERNETES_VERSION = "1.33.0"
# The longest slug the pre-generation hook accepts, with underscores (not allowed in Kubernetes
# names): rendered too, with every option on.
LONG_SLUG = {"project_slug": "long_" + "x" * 57 + "9"}
ALL_ON = [{"database": "postgresql", "use_b2_storage": True, "use_redis": True}]
K8S_DIR = "deploy/kubernetes/"
KUSTOMIZATION = K8S_DIR + "kustomization.yaml"
WORKER_COMMAND = ["taskiq", "worker", "app.worker:broker", "--workers", "1"]

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


def deployment_variants() -> list[Variant]:
    """Every combination of answers, and every option on with LONG_SLUG, grouped by the
    deployment files they render."""
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


def pod_spec(doc: Mapping) -> Mapping:
    kind = doc.get("kind")
    if kind in {"Deployment", "Job"}:
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {}


@dataclass(frozen=True)
class Dockerfile:
    """What the runtime stage of a rendered Dockerfile sets."""

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
