"""The real Asterisk for tests: one throwaway sandbox instance per test session, on free ports.

The session fixture provisions the cached root if needed (``sandbox.sh
provision``; the README's test command has done it already), renders our
configuration into ``<root>/srv/cunxiang/t<pid>`` with its own AMI, SIP and
FastAGI ports, starts it, renders the prompts once, and stops and removes the
instance at the end. Each test then gets its own service (its own database,
data directory and worker) talking to that instance; between tests the spool
and the CDR file are emptied and every channel is hung up, so no test sees
another's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotline.asterisk import Sandbox, instance_paths

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "deploy" / "asterisk" / "sandbox.sh"


class SandboxUnavailable(Exception):
    """This machine cannot run the sandbox; the message says why."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def provision() -> Path:
    """The provisioned root (built now if this machine has none: about a minute, once)."""
    if os.geteuid() != 0:
        raise SandboxUnavailable("the Asterisk sandbox needs root (debootstrap, chroot, mount)")
    found = subprocess.run([str(SCRIPT), "root"], capture_output=True, text=True, check=False)
    if found.returncode == 0 and found.stdout.strip():
        return Path(found.stdout.strip())
    done = subprocess.run([str(SCRIPT), "provision"], capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SandboxUnavailable(f"sandbox.sh provision failed: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class SandboxInstance:
    root: Path
    name: str
    ami_port: int
    sip_port: int
    fastagi_port: int
    ami_secret: str

    @classmethod
    def new(cls, root: Path) -> SandboxInstance:
        return cls(
            root=root,
            name=f"t{os.getpid()}",
            ami_port=free_port(),
            sip_port=free_port(socket.SOCK_DGRAM),
            fastagi_port=free_port(),
            ami_secret=secrets.token_hex(12),
        )

    @property
    def sandbox(self) -> Sandbox:
        return Sandbox(SCRIPT, self.root, self.name)

    @property
    def directory(self) -> Path:
        return instance_paths(self.root, self.name)[0]

    def settings_values(self, *, production: bool = False, **ivr: Any) -> dict[str, Any]:
        """Settings (as make_settings overrides) for a service using this instance, with short IVR timings.

        ``production=True`` keeps every IVR timeout and retry count at its default instead.
        """
        from settings import (
            AmiSettings,
            FastAgiSettings,
            HotlineSettings,
            IvrSettings,
            SandboxSettings,
            TtsSettings,
        )

        timings: dict[str, Any] = {
            "menu_timeout_s": 2.0,
            "digit_timeout_s": 4.0,
            "number_attempts": 2,
            "record_silence_s": 2,
            "record_max_s": 60,
            "record_attempts": 2,
            "operator_ring_s": 3,
            "survey_timeout_s": 3.0,
            "survey_attempts": 2,
            "callback_ring_s": 10,
            "call_limit_s": 600,
        }
        if production:
            timings = {}
        # Prompts spoken fast, with no pauses: the same sentences, in a third of the time.
        timings.update({"prompt_rate": "+0%", "lead_in_ms": 0, "digit_pause_ms": 50})
        timings.update(ivr)
        return {
            "asterisk": "sandbox",
            "ami": AmiSettings(
                port=self.ami_port,
                secret=self.ami_secret,
                ping_interval_s=2.0,
                ping_timeout_s=5.0,
                reconnect_min_s=0.2,
                reconnect_max_s=1.0,
            ),
            "fastagi": FastAgiSettings(port=self.fastagi_port),
            "sandbox": SandboxSettings(
                root=str(self.root), instance=self.name, sip_port=self.sip_port, softphone_password="test-softphone"
            ),
            "ivr": IvrSettings(**timings),
            "hotline": HotlineSettings(mixmonitor_wait_s=10.0, reconcile_interval_s=3600.0),
            # The offline engine only: no waiting for an unreachable cloud in tests.
            "tts": TtsSettings(engines=("espeak",), espeak_speed_wpm=400),
        }

    def reset(self) -> None:
        """Empty the spool and the CDR file between tests (the previous test's calls are not this one's)."""
        paths = self.sandbox.paths
        for directory in (paths.spool.host, paths.spool.host.with_name("cunxiang-test")):
            if directory.exists():
                for entry in directory.iterdir():
                    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                        entry.unlink()
        if paths.cdr_csv is not None and paths.cdr_csv.exists():
            with paths.cdr_csv.open("r+b") as handle:
                handle.truncate(0)

    def stop_and_remove(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run(self.sandbox.stop())
        directory = self.directory
        if directory.exists() and directory.parent.name == "cunxiang":
            shutil.rmtree(directory, ignore_errors=True)
