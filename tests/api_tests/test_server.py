"""The API server as `multitune api` runs it (gunicorn): one listening socket per process, and
no silent sharing of a port that something else already listens on."""

from __future__ import annotations

import os
import socket

import psutil

from tests.services import Platform


def test_each_api_process_listens_on_its_own_socket(platform: Platform) -> None:
    """With one shared socket, the first process to wake accepted every new connection and
    keep-alive clients stayed there (15 of 16 on one of two processes, measured); a socket
    per process lets the kernel spread connections over them."""
    platform.start_api(workers=2)
    master = psutil.Process(platform.running["api"].pid)
    workers = [p for p in master.children(recursive=True) if p.name() == master.name()]
    assert len(workers) == 2
    sockets = set()
    for worker in workers:
        listening = [
            os.stat(f"/proc/{worker.pid}/fd/{c.fd}").st_ino
            for c in worker.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == platform.port
        ]
        assert len(listening) == 1, f"worker {worker.pid} has {len(listening)} listeners"
        sockets.update(listening)
    assert len(sockets) == 2, "the workers share one listening socket"


def test_api_refuses_a_port_in_use(platform: Platform) -> None:
    """Even one held by a server that allows sharing it (as another `multitune api` does)."""
    with socket.create_server(("127.0.0.1", platform.port), reuse_port=True):
        result = platform.cli("api", "--port", str(platform.port))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{platform.port}" in result.stderr
