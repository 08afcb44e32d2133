"""Lint and render the Helm chart with Helm's own engine, and validate what it renders.

No `helm` binary can be had here, so this drives Helm's Go library through helm-sdkpy: `lint` runs Helm's linter;
`render` installs the chart (HELM_DRIVER=memory, so no release Secret) into the Kubernetes API server named by a
kubeconfig — in the tests, the project's fake API server — and validates every rendered object with
kubernetes-validate, strict, for each Kubernetes version asked for. helm-sdkpy has no dry run: an install is the only
way it renders.

Both print one JSON document on stdout for the caller (tests/integration/helm_chart.rs) to assert on, and exit 1
with the reason on stderr when Helm or the validation refuses the chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

# Keep releases in memory, not in Secrets of the API server. Helm's Go runtime reads the environment the process
# started with, so setting it here is too late: start again with it.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})

import helm_sdkpy  # noqa: E402
import kubernetes_validate  # noqa: E402
import yaml  # noqa: E402

# helm.sh/helm/v4/pkg/chart/v2/lint/support: Info, Warning, Error. Lint messages come back without their text.
SEVERITIES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Values files merged as Helm merges several -f files: maps key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: list[str], inline: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        values = deep_merge(values, yaml.safe_load(Path(path).read_text()) or {})
    for text in inline:
        values = deep_merge(values, json.loads(text))
    return values


def lint(chart: str, kubeconfig: str | None) -> int:
    config = helm_sdkpy.Configuration(namespace="default", kubeconfig=kubeconfig)
    result = asyncio.run(helm_sdkpy.Lint(config).run(chart))
    messages = [
        {"severity": SEVERITIES.get(m.get("Severity"), str(m.get("Severity"))), "path": m.get("Path")}
        for m in result.get("Messages") or []
    ]
    print(json.dumps({"messages": messages, "errors": len(result.get("Errors") or [])}))
    # Like `helm lint --strict`: a warning fails too.
    refused = [m for m in messages if m["severity"] in ("warning", "error", "unknown")]
    if refused:
        print(f"helm lint refused the chart: {refused} (Helm's lint messages have no text here)", file=sys.stderr)
        return 1
    return 0


def validate(objects: list[dict[str, Any]], versions: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each object against each version: the names validated per version, and those no schema exists for."""
    validated: dict[str, list[str]] = {version: [] for version in versions}
    unknown: list[str] = []
    for item in objects:
        name = f"{item['kind']}/{item['metadata']['name']}"
        for version in versions:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if name not in unknown:
                    unknown.append(name)
                continue
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                raise SystemExit(f"{name} is not a valid {version} object: {path}: {error.message}") from None
            validated[version].append(name)
    return validated, unknown


def sidecar_snippet(notes: str) -> dict[str, Any] | None:
    """The container and volumes NOTES.txt tells sidecar users to add, as a pod spec; None outside sidecar mode."""
    start, middle = "append to containers:", "and append to volumes:"
    if start not in notes:
        return None
    containers, volumes = notes.split(start, 1)[1].split(middle, 1)
    return {"containers": yaml.safe_load(containers), "volumes": yaml.safe_load(volumes)}


def as_deployment(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A worker Deployment that carries the sidecar snippet, so kubernetes-validate can judge the snippet."""
    labels = {"app": "worker"}
    worker = {"name": "worker", "image": "worker:1"}
    spec = {**pod_spec, "containers": [worker, *pod_spec["containers"]]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker-with-sidecar"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def render(args: argparse.Namespace) -> int:
    values = load_values(args.values, args.set_json)
    config = helm_sdkpy.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    install = helm_sdkpy.Install(config)
    try:
        release = asyncio.run(install.run(args.release, args.chart, values=values, wait=False, timeout=60))
    except helm_sdkpy.HelmError as error:
        print(f"helm install refused the chart: {error}", file=sys.stderr)
        return 1
    objects = [item for item in yaml.safe_load_all(release.get("manifest", "")) if item]
    notes = (release.get("info") or {}).get("notes", "")
    snippet = sidecar_snippet(notes)
    to_validate = objects + ([as_deployment(snippet)] if snippet else [])
    validated, unknown = validate(to_validate, args.kube_version)
    report = {"objects": objects, "notes": notes, "sidecar": snippet, "validated": validated, "unknown": unknown}
    print(json.dumps(report))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lint_command = commands.add_parser("lint", help="helm lint, strict")
    lint_command.add_argument("chart")
    lint_command.add_argument("--kubeconfig")
    render_command = commands.add_parser("render", help="install into the API server, then validate")
    render_command.add_argument("chart")
    render_command.add_argument("--kubeconfig", required=True)
    render_command.add_argument("--namespace", required=True)
    render_command.add_argument("--release", required=True)
    render_command.add_argument("--values", action="append", default=[], help="a values file; repeatable")
    render_command.add_argument("--set-json", action="append", default=[], help="values as JSON; repeatable")
    render_command.add_argument(
        "--kube-version", action="append", required=True, help="validate against this Kubernetes; repeatable"
    )
    args = parser.parse_args()
    if args.command == "lint":
        return lint(args.chart, args.kubeconfig)
    return render(args)


if __name__ == "__main__":
    sys.exit(main())
