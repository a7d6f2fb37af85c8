"""Starting real server processes for tests: a free loopback port, waiting for /health, clean shutdown."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(command: list[str], port: int, *, env: dict[str, str] | None = None,
                   timeout: float = 120.0) -> Iterator[str]:
    """Run ``command`` (which must serve HTTP on ``port``) until the block ends; yields its base URL once
    ``/health`` answers 200. Fails with the process's last output if it exits or never comes up."""
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    output.seek(0)
                    raise AssertionError(f"server exited with {process.returncode}:\n"
                                         f"{output.read().decode(errors='replace')[-3000:]}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"server did not answer {base}/health within {timeout:.0f} s")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def serving_in_process(service: Any) -> Iterator[httpx.Client]:
    """The API app over ``service`` on a real uvicorn server in a thread, on a free loopback port; yields a
    client on it and closes the service's store afterwards (for tests that hand the service a scripted model)."""
    import threading

    import uvicorn

    from recllm.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.store.close()
