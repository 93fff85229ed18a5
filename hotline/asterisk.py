"""Our Asterisk configuration, rendered from the settings, and the sandbox instance that runs it.

Two views of every shared file: Asterisk runs in a chroot (the sandbox) or on
another machine (an external Asterisk), so a directory has one path *as this
service sees it* and another *as Asterisk sees it*. :class:`SharedDir` keeps
both and maps between them, refusing paths that leave the directory; nothing
here ever assumes the two strings are the same.

:func:`render_configuration` renders ``deploy/asterisk/templates/*.j2`` with
jinja2 (``StrictUndefined``: a missing value fails loudly) into an instance's
``etc/``, each file written atomically. :class:`Sandbox` drives
``deploy/asterisk/sandbox.sh`` (start/stop/status/rx) for ``cunxiang asterisk
up|down|status`` and for the tests' throwaway instances.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from common.errors import ServiceUnavailable
from tts.audio import atomic_write

# Where instances live inside a provisioned root (sandbox.sh creates it).
INSTANCES_IN_ROOT = PurePosixPath("/srv/cunxiang")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AsteriskUnavailable(ServiceUnavailable):
    default_code = "asterisk.unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__("电话系统（Asterisk）不可用", detail=detail)


@dataclass(frozen=True)
class SharedDir:
    """A directory both we and Asterisk use: ``host`` is our path, ``asterisk`` Asterisk's."""

    host: Path
    asterisk: PurePosixPath

    def to_host(self, asterisk_path: str) -> Path:
        """Our path for a file Asterisk named; ValueError if it is not inside this directory."""
        relative = PurePosixPath(asterisk_path).relative_to(self.asterisk)
        if not relative.parts or any(part in ("..", "") for part in relative.parts):
            raise ValueError(f"{asterisk_path!r} is not a file inside {self.asterisk}")
        return self.host.joinpath(*relative.parts)

    def to_asterisk(self, host_path: Path) -> PurePosixPath:
        relative = host_path.relative_to(self.host)
        if any(part == ".." for part in relative.parts):
            raise ValueError(f"{host_path} is not inside {self.host}")
        return self.asterisk.joinpath(*relative.parts)


@dataclass(frozen=True)
class AsteriskPaths:
    """Every place the service and Asterisk share."""

    # Recordings are written here by Record/MixMonitor and moved out once a call is over.
    spool: SharedDir
    # Our IVR prompts (played by absolute path) and their manifest.
    prompts: SharedDir
    # Other audio Asterisk plays for us: the dial test's sentence, broadcast items for paging, test audio.
    media: SharedDir
    # Asterisk's CDR CSV (reconciliation); None when not readable from here.
    cdr_csv: Path | None
    # uid/gid Asterisk runs as, for files we put where it reads (None: leave ownership as it is).
    owner: tuple[int, int] | None = None
    # Asterisk's outgoing call-file spool as this service sees it (``pbx_spool``: calls placed without AMI,
    # hotline/call_files.py); None when not reachable from here.
    outgoing: Path | None = None

    def prepare(self) -> None:
        """Create the shared directories, readable and writable by Asterisk and not by the world."""
        for shared in (self.spool, self.prompts, self.media):
            shared.host.mkdir(parents=True, exist_ok=True)
            os.chmod(shared.host, 0o750)
            if self.owner is not None:
                os.chown(shared.host, *self.owner)

    def give_to_asterisk(self, path: Path) -> None:
        """A file we wrote for Asterisk to read: owned by its user, not readable by others."""
        if self.owner is not None:
            os.chown(path, *self.owner)
        os.chmod(path, 0o640)


def instance_paths(root: Path, instance: str) -> tuple[Path, PurePosixPath]:
    """The instance directory as the host sees it and as Asterisk (inside the chroot) does."""
    if not SAFE_NAME.match(instance):
        raise ValueError(f"bad instance name {instance!r}")
    inner = INSTANCES_IN_ROOT / instance
    return root.joinpath(*inner.parts[1:]), inner


def sandbox_paths(root: Path, instance: str) -> AsteriskPaths:
    host, inner = instance_paths(root, instance)
    return AsteriskPaths(
        spool=SharedDir(host / "spool" / "cunxiang", inner / "spool" / "cunxiang"),
        prompts=SharedDir(host / "sounds" / "cunxiang", inner / "sounds" / "cunxiang"),
        media=SharedDir(host / "media", inner / "media"),
        cdr_csv=host / "log" / "cdr-csv" / "Master.csv",
        owner=asterisk_owner(root),
        outgoing=host / "spool" / "outgoing",
    )


def asterisk_owner(root: Path) -> tuple[int, int] | None:
    """The chroot's asterisk uid/gid (sandbox.sh renumbers them to one free on the host too)."""
    try:
        passwd = (root / "etc" / "passwd").read_text()
    except OSError:
        return None
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == "asterisk":
            return int(fields[2]), int(fields[3])
    return None


# -- rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IvrTimings:
    """The dialplan's timeouts and retry counts (see settings.IvrSettings for what each means)."""

    menu_timeout_s: float = 18.0
    menu_attempts: int = 3
    digit_timeout_s: float = 15.0
    number_attempts: int = 3
    record_max_s: int = 300
    record_silence_s: int = 8
    record_warning_s: int = 10
    record_attempts: int = 2
    operator_dial: str = ""
    operator_ring_s: int = 30
    call_limit_s: int = 3600
    survey_timeout_s: float = 15.0
    survey_attempts: int = 3
    callback_ring_s: int = 45


@dataclass(frozen=True)
class Trunk:
    host: str = ""
    username: str = ""
    password: str = ""
    register: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def match(self) -> str:
        """The carrier's address without a port (PJSIP identify matches on the source address)."""
        host = self.host
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class RenderConfig:
    """Everything the templates need, from the settings (``hotline.part.telephony_config`` builds it)."""

    instance_dir: str  # as Asterisk sees it
    system_name: str
    ami_bind: str
    ami_port: int
    ami_user: str
    ami_secret: str
    sip_bind: str
    sip_port: int
    fastagi_url: str  # agi://host:port
    spool_dir: str  # as Asterisk sees them
    prompts_dir: str
    media_dir: str
    case_number_length: int
    pin_length: int
    ivr: IvrTimings
    softphone_user: str = "1001"
    softphone_password: str = ""
    trunk: Trunk = field(default_factory=Trunk)
    ami_permit: str = "127.0.0.1/255.255.255.255"
    # The phone-broadcast line's number (手机喊话, hotline.phonecast_did); empty: every number is the hotline.
    phonecast_did: str = ""
    # Stand-ins for an operator's phone and SIP speakers (Local channels): tests and the dial test use them.
    test_contexts: bool = True

    def context(self) -> dict[str, Any]:
        values = asdict(self)
        values["ivr"] = self.ivr
        values["trunk"] = self.trunk
        return values


def template_environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # configuration files, not HTML
    )


def render_configuration(templates: Path, config: RenderConfig) -> dict[str, str]:
    """Every ``*.j2`` template rendered: file name (without ``.j2``) → text."""
    environment = template_environment(templates)
    context = config.context()
    return {
        name.removesuffix(".j2"): environment.get_template(name).render(**context)
        for name in sorted(environment.list_templates(extensions=["j2"]))
    }


def write_configuration(files: Mapping[str, str], etc: Path, owner: tuple[int, int] | None = None) -> list[str]:
    """Write rendered files into ``etc`` (atomically, mode 0640: manager.conf holds the AMI secret).

    Returns the names whose content changed, so a caller reloads only what it must.
    """
    etc.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = etc / name
        data = text.encode("utf-8")
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        atomic_write(path, data)
        os.chmod(path, 0o640)
        if owner is not None:
            os.chown(path, *owner)
        changed.append(name)
    return changed


# -- the sandbox ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxStatus:
    running: bool
    detail: str


class Sandbox:
    """One instance of the Asterisk sandbox, through ``deploy/asterisk/sandbox.sh``."""

    def __init__(self, script: Path, root: Path, instance: str, *, timeout_s: float = 120.0) -> None:
        self.script = script
        self.root = root
        self.instance = instance
        self.instance_dir, self.inner_dir = instance_paths(root, instance)
        self._timeout_s = timeout_s

    @staticmethod
    async def find_root(script: Path) -> Path | None:
        """The provisioned root, or None when the machine has none yet (``sandbox.sh provision`` makes it)."""
        code, out, _err = await _run([str(script), "root"], timeout_s=30)
        return Path(out.strip()) if code == 0 and out.strip() else None

    @staticmethod
    async def provision(script: Path, *, timeout_s: float = 900.0) -> Path:
        code, out, err = await _run([str(script), "provision"], timeout_s=timeout_s)
        if code != 0:
            raise AsteriskUnavailable(f"sandbox.sh provision failed: {_tail(err)}")
        return Path(out.strip().splitlines()[-1])

    @property
    def paths(self) -> AsteriskPaths:
        return sandbox_paths(self.root, self.instance)

    def install(self, files: Mapping[str, str]) -> list[str]:
        """Write the rendered configuration into the instance's ``etc/``; returns what changed."""
        paths = self.paths
        paths.prepare()
        return write_configuration(files, self.instance_dir / "etc", asterisk_owner(self.root))

    async def start(self) -> None:
        code, _out, err = await self._script("start", str(self.instance_dir))
        if code != 0:
            raise AsteriskUnavailable(f"sandbox.sh start {self.instance}: {_tail(err)}")

    async def stop(self) -> None:
        code, _out, err = await self._script("stop", str(self.instance_dir))
        if code != 0:
            raise AsteriskUnavailable(f"sandbox.sh stop {self.instance}: {_tail(err)}")

    async def status(self) -> SandboxStatus:
        if not (self.instance_dir / "etc" / "asterisk.conf").exists():
            return SandboxStatus(False, "not set up (run: cunxiang asterisk up)")
        code, out, err = await self._script("status", str(self.instance_dir))
        if code == 0:
            return SandboxStatus(True, out.strip())
        if code == 3:
            return SandboxStatus(False, "stopped")
        return SandboxStatus(False, _tail(err) or out.strip())

    async def rx(self, command: str) -> str:
        code, out, err = await self._script("rx", str(self.instance_dir), command)
        if code != 0:
            raise AsteriskUnavailable(f"sandbox.sh rx {command!r}: {_tail(err) or out.strip()}")
        return out

    async def reload(self, changed: Sequence[str]) -> None:
        """Make a running instance read changed files (dialplan, AMI users, PJSIP) without a restart."""
        if "extensions.conf" in changed:
            await self.rx("dialplan reload")
        if "manager.conf" in changed:
            await self.rx("manager reload")
        if "pjsip.conf" in changed:
            await self.rx("module reload res_pjsip.so")

    async def _script(self, *args: str) -> tuple[int, str, str]:
        return await _run([str(self.script), *args], timeout_s=self._timeout_s)


async def _run(argv: Sequence[str], *, timeout_s: float) -> tuple[int, str, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise AsteriskUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line)
