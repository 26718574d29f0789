"""The deployment files' own linters, each run once over every distinct file of every variant.

hadolint, yamllint, zizmor, pre-commit's config check, kubernetes-validate, the JSON schemas that
check-jsonschema ships, and `kubectl kustomize` when it is installed (deploy_files.py renders
the variants).
"""

import hashlib
import importlib.resources
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_files import K8S_DIR, KUBERNETES_VERSION, KUSTOMIZATION, Variant, is_manifest, pod_spec
from helpers import BIN, run
from ruamel.yaml import YAML

# The JSON-schema checks read YAML 1.2 like check-jsonschema (and GitHub): PyYAML's YAML 1.1
# turns a workflow's `on:` key into True.
YAML_1_2 = YAML(typ="safe", pure=True)


def is_yaml(rel: str) -> bool:
    return rel.endswith((".yml", ".yaml"))


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
    kubectl. The resources list itself is checked in every case by test_deploy_kubernetes.py."""
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
