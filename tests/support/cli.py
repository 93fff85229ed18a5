"""Running the real `cunxiang` command, and the real service as a separate process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CUNXIANG = str(Path(sys.executable).parent / "cunxiang")

# Cheap hashing and no telephony: these tests are about the command line and processes.
BASE_ENVIRONMENT = {
    "CUNXIANG_ASTERISK": "none",
    "CUNXIANG_SECURITY_PASSWORD_MEMORY_KIB": "1024",
    "CUNXIANG_SECURITY_PASSWORD_TIME_COST": "1",
    "CUNXIANG_WORKER_ELECTION_INTERVAL_S": "0.2",
}


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CUNXIANG_")}
    env.update(BASE_ENVIRONMENT)
    env["CUNXIANG_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def run(args: list[str], env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CUNXIANG, *args], env=dict(env), capture_output=True, text=True, timeout=timeout)


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServiceProcess:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = get_json(self.url + "/healthz")[1]
        return health

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"service exited with {self.process.returncode}: {output}")
            try:
                last = self.health()
                if predicate(last):
                    return dict(last)
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"condition not reached within {timeout} s; last health: {last}")


def start_service(env: Mapping[str, str], port: int | None = None) -> ServiceProcess:
    """`cunxiang serve` as its own process group (stop it with :func:`stop_service`)."""
    port = port or free_port()
    process = subprocess.Popen(
        [CUNXIANG, "serve", "--port", str(port)],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return ServiceProcess(process, port)


def stop_service(service: ServiceProcess) -> None:
    """SIGTERM to its process group (a clean stop), SIGKILL if it does not end within 20 s."""
    process = service.process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout:
        process.stdout.close()


@contextmanager
def serving(env: Mapping[str, str], port: int | None = None) -> Iterator[ServiceProcess]:
    service = start_service(env, port)
    try:
        yield service
    finally:
        stop_service(service)
