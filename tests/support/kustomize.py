"""deploy/k8s rendered as Kubernetes would get it: ``kubectl kustomize`` of a directory
(a loud failure naming the install when kubectl is missing), a throwaway overlay of the
base plus one component, and picking the one object of a kind and name."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT

K8S = ROOT / "deploy" / "k8s"
Obj = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed (needed for `kubectl kustomize`): see "
            "https://kubernetes.io/docs/tasks/tools/ (apt: the `kubectl` package from pkgs.k8s.io)",
            pytrace=False,
        )
    return path


def render(directory: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_component(tmp_path: Path, component: Path) -> Path:
    """A throwaway overlay: the base plus one component (kustomize wants relative paths)."""
    overlay = tmp_path / f"with-{component.name}"
    overlay.mkdir()
    manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "base", overlay)],
        "components": [os.path.relpath(component, overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(manifest))
    return overlay


def only(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind and name in (None, obj["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]
