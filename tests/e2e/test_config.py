"""``sse-hub check-config`` and ``sse-hub serve`` as real processes: a valid configuration passes,
a bad one exits 2 naming the key (never echoing a secret), and the kubelet's service-link
variables are skipped with a warning."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_sse_hub
from tests.support.kubelet import KUBELET, KUBELET_SSE_HUB
from tests.support.paths import ROOT
from tests.support.processes import HubProcess

EXAMPLE = ROOT / "config.example.yaml"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_sse_hub("check-config", *args, env=env)


def test_check_config_accepts_the_example_file() -> None:
    result = check_config("--config", str(EXAMPLE))
    assert (result.returncode, result.stderr) == (0, "")
    assert "valid" in result.stdout


def test_check_config_accepts_no_file_at_all() -> None:
    assert check_config().returncode == 0


def test_check_config_exits_2_naming_the_bad_key(tmp_path: Path) -> None:
    result = check_config("--config", str(write(tmp_path, "limits: {max_batch: 0}\nserver: {prot: 1}\n")))
    assert result.returncode == 2
    assert "limits.max_batch" in result.stderr and "server.prot" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_exits_2_naming_the_bad_env_variable() -> None:
    result = check_config("--config", str(EXAMPLE), env={"SSE_HUB_SERVER__PORT": "eighty"})
    assert result.returncode == 2
    assert "server.port" in result.stderr and "SSE_HUB_SERVER__PORT" in result.stderr


def test_check_config_reads_sse_hub_config_from_the_environment(tmp_path: Path) -> None:
    result = check_config(env={"SSE_HUB_CONFIG": str(write(tmp_path, "streams: [{path: bad, channels: [a]}]\n"))})
    assert result.returncode == 2
    assert "streams.0.path" in result.stderr


def test_check_config_exits_2_for_unreadable_or_invalid_yaml(tmp_path: Path) -> None:
    missing = check_config("--config", str(tmp_path / "absent.yaml"))
    broken = check_config("--config", str(write(tmp_path, "server: [\n")))
    assert (missing.returncode, broken.returncode) == (2, 2)
    assert "cannot read config file" in missing.stderr and "not valid YAML" in broken.stderr
    assert "Traceback" not in missing.stderr + broken.stderr


# -- beside the kubelet's service links, and checks at load time ---------------------------


def test_check_config_warns_about_the_skipped_variables_and_passes() -> None:
    result = run_sse_hub("check-config", env=KUBELET)
    assert (result.returncode, result.stdout) == (0, "configuration is valid\n")
    (line,) = result.stderr.splitlines()
    assert "WARNING" in line and "Kubernetes" in line and "enableServiceLinks: false" in line
    assert f"ignoring {len(KUBELET)} environment variable(s)" in line
    assert all(name in line for name in KUBELET)
    assert "10.96.12.34" not in line  # names, not values


def test_the_warning_follows_the_log_format() -> None:
    result = run_sse_hub("check-config", env={**KUBELET_SSE_HUB, "SSE_HUB_LOG__FORMAT": "json"})
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("warning", "sse_hub.cli")
    assert "SSE_HUB_PORT_8080_TCP_ADDR" in entry["message"]


def test_check_config_with_service_links_still_exits_2_for_a_misspelt_key() -> None:
    result = run_sse_hub("check-config", env={**KUBELET, "SSE_HUB_BROKER__BACKND": "redis"})
    assert result.returncode == 2
    assert "broker.backnd (from SSE_HUB_BROKER__BACKND): unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_starts_beside_service_links(hub_process: Callable[..., HubProcess]) -> None:
    hub = hub_process(env=KUBELET_SSE_HUB)
    assert hub.stop() == 0
    log = hub.log()
    assert "ignoring 8 environment variable(s) that Kubernetes sets" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SSE_HUB_SERVER__TRUSTED_PROXIES": "10.0.0.0/8,ingress"}, "server.trusted_proxies.1"),
        (
            {"SSE_HUB_AUTH__SUBSCRIBER_JWT__PUBLIC_KEY_FILE": "/nonexistent/key.pem"},
            "auth.subscriber_jwt.public_key_file",
        ),
        (
            {"SSE_HUB_AUTH__SUBSCRIBER_JWT__SECRET": "k" * 32, "SSE_HUB_AUTH__SUBSCRIBER_JWT__ALGORITHMS": "HS257"},
            "auth.subscriber_jwt.algorithms",
        ),
        ({"SSE_HUB_BROKER__BACKEND": "redis", "SSE_HUB_BROKER__REDIS_URL": "redis//localhost"}, "broker.redis_url"),
    ],
    ids=["trusted_proxies", "public_key_file", "algorithm", "redis_url"],
)
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_check_config_and_serve_exit_2_naming_the_key(env: dict[str, str], key: str, command: str) -> None:
    # serve on loopback: should the check ever pass, the hub starts and the run times out.
    args = ["--host", "127.0.0.1", "--port", "0"] if command == "serve" else []
    result = run_sse_hub(command, *args, env=env)
    assert result.returncode == 2
    assert key in result.stderr and "Traceback" not in result.stderr
    assert "k" * 32 not in result.stderr
