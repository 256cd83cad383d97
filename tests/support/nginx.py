"""Real nginx running the shipped deploy/nginx.conf in front of two real ``sse-hub``
processes on one Redis: the ``nginx_cluster`` fixture (a plugin, loaded by
``tests/conftest.py``), ``nginx_binary``, and ``render_nginx_conf``.

The config under test is the shipped one: ``deploy/local.sh render-nginx-conf`` rewrites
only its hub addresses, listen port, log/pid/temp paths and drops the TLS lines (the
same rewrite ``deploy/local.sh`` runs by hand), so buffering, timeouts and forwarded
headers are exactly what users deploy.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port, require_binary, wait_for_http, wait_for_port

RENDER = ROOT / "deploy" / "local.sh"


@dataclass
class Nginx:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # SIGTERM is nginx's fast shutdown; SIGQUIT would wait for open streams to end.
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class NginxCluster:
    nginx: Nginx
    hubs: list[HubProcess]


def render_nginx_conf(workdir: Path, listen_port: int, tls_port: int, hub_ports: list[int], cert_dir: Path) -> Path:
    """deploy/nginx.conf as deploy/local.sh rewrites it for loopback."""
    result = subprocess.run(
        ["bash", str(RENDER), "render-nginx-conf", str(workdir), str(listen_port), str(tls_port), *map(str, hub_ports)],
        env={**os.environ, "CERT_DIR": str(cert_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path = workdir / "nginx.conf"
    path.write_text(result.stdout)
    return path


@pytest.fixture
def nginx_binary() -> str:
    return require_binary("nginx", "nginx-light")


@pytest.fixture
def nginx_cluster(
    nginx_binary: str, redis_server: str, hub_process: Callable[..., HubProcess], tmp_path: Path
) -> Iterator[NginxCluster]:
    """Two hubs on the session's Redis behind nginx with the shipped config."""
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": f"test-nginx-{uuid.uuid4().hex[:12]}",
        "SSE_HUB_SERVER__TRUSTED_PROXIES": "[127.0.0.1]",
    }
    hubs = [hub_process(env=env), hub_process(env=env)]
    for hub in hubs:
        # /readyz is 200 once the hub's Redis subscription is confirmed.
        wait_for_http(f"{hub.url}/readyz", hub.process, hub.log_path)
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    port = free_port()
    conf = render_nginx_conf(workdir, port, 0, [hub.port for hub in hubs], tmp_path / "no-certs")
    log_path = workdir / "nginx.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [nginx_binary, "-p", f"{workdir}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    nginx = Nginx(f"http://127.0.0.1:{port}", process, log_path)
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{nginx.log()}") from exc
        yield NginxCluster(nginx, hubs)
    finally:
        nginx.stop()
