"""The composition root: the runtime is built once per `serve`, and building it runs no program.

A program run while building would block the event loop `serve` builds in
(``sandbox.sh root`` took up to 30 s); the sandbox root is looked up before,
asynchronously, and handed in.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp import web

import server
from common.errors import StartupError
from server import Runtime, build_runtime
from settings import Settings
from tests.support.cli import free_port
from tests.support.settings import make_settings


def test_building_the_runtime_runs_no_program_even_when_the_sandbox_root_is_not_known(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_program(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError(f"a program was run while building the runtime: {args}")

    monkeypatch.setattr(subprocess, "run", no_program)
    monkeypatch.setattr(subprocess, "Popen", no_program)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_program)
    settings = make_settings(tmp_path / "data", database_url, asterisk="sandbox")
    runtime = build_runtime(settings)
    telephony = runtime.hotline.telephony
    assert telephony is not None and telephony.config.problem is not None
    assert telephony.config.problem.startswith("the Asterisk sandbox is not provisioned")


async def test_serve_builds_the_runtime_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Runtime] = []

    def counted(*args: Any, **kwargs: Any) -> Runtime:
        built.append(build_runtime(*args, **kwargs))
        return built[-1]

    async def port_taken(_site: web.TCPSite) -> NoReturn:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(server, "build_runtime", counted)
    monkeypatch.setattr(web.TCPSite, "start", port_taken)
    port = free_port()
    with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
        await server.serve(settings, "127.0.0.1", port)
    assert len(built) == 1
