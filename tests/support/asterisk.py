"""The real Asterisk for tests: a pytest plugin with one throwaway sandbox instance per test process.

Registered once, in ``tests/conftest.py`` (``pytest_plugins``), so every
directory that talks to Asterisk (``tests/*/asterisk/``) shares the same
session fixtures: one instance per test process, that is one per pytest-xdist
worker, never one per directory. A fixture re-exported from another conftest
would be a second definition, hence a second instance.

The session fixture provisions the cached root if needed (``sandbox.sh
provision``; the README's test command has done it already), renders our
configuration into ``<root>/srv/cunxiang/t<pid>`` with its own AMI, SIP and
FastAGI ports, starts it, renders the prompts once, and stops and removes the
instance at the end. Each test then gets its own service (its own database,
data directory and worker) talking to that instance; between tests the spool
and the CDR file are emptied and every channel is hung up, so no test sees
another's calls. A directory's conftest asks for ``clean_asterisk_instance``
(autouse there) and gives ``settings = asterisk_settings``; the collection hook
in ``tests/conftest.py`` marks every test under an ``asterisk/`` directory
``asterisk`` and ``slow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from common.clock import SystemClock
from hotline.ami import AmiConfig, AmiLink, Message
from hotline.asterisk import Sandbox, instance_paths
from hotline.dialtest import HangupAt, SimulatedVillager, VillagerCall, VillagerScript
from hotline.part import Telephony, sandbox_up
from hotline.recordings import inspect
from server import Runtime, build_runtime
from settings import Settings
from tests.support.cli import environment
from tests.support.required import missing
from tests.support.settings import make_settings

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "deploy" / "asterisk" / "sandbox.sh"


# The phone-broadcast line's number in the tests' dialplan (any other number is the hotline).
PHONECAST_DID = "96110"


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
            # The phone-broadcast line on its own number, with short waits: its tests hold a call per question.
            "hotline": HotlineSettings(
                mixmonitor_wait_s=10.0,
                reconcile_interval_s=3600.0,
                phonecast_did=PHONECAST_DID,
                phonecast_max_recording_s=20,
                phonecast_record_silence_s=2,
                phonecast_key_timeout_s=3.0,
                phonecast_attempts=2,
                # No live mode (实时喊话) unless a test asks for it (its hard limit, a few seconds): the recorded
                # line's tests then need no key for the mode question.
                phonecast_live_max_s=0,
            ),
            # The offline engine only: no waiting for an unreachable cloud in tests.
            "tts": TtsSettings(engines=("espeak",), espeak_speed_wpm=400),
        }

    def environment(self, data_dir: Path, database_url: str, **ivr: Any) -> dict[str, str]:
        """The environment of a ``cunxiang`` process using this instance with the tests' settings (and ``ivr``).

        The same values as :meth:`settings_values`, so the process finds the dialplan already rendered
        and the prompts already installed (nothing reloaded, nothing rendered again).
        """
        values = self.settings_values(**ivr)
        env = environment(data_dir, CUNXIANG_ASTERISK="sandbox", CUNXIANG_DATABASE_URL=database_url)
        for section in ("ami", "fastagi", "sandbox", "ivr", "hotline", "tts"):
            for name, value in values[section].model_dump(exclude_unset=True).items():
                if isinstance(value, bool):
                    text = "true" if value else "false"
                elif isinstance(value, tuple | list):
                    text = ",".join(str(item) for item in value)
                else:
                    text = str(value)
                env[f"CUNXIANG_{section.upper()}_{name.upper()}"] = text
        return env

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


# -- the plugin's fixtures ------------------------------------------------------------------

# What the simulated villager says (rendered by our TTS once per test process).
VILLAGER_SENTENCE = "我是东村的王大娘。村口那座桥裂了一道大口子，娃娃们上学天天走，太危险了，请你们快来看看。"
OPERATOR_SENTENCE = "您好，我是热线接线员。您说的事情我记下了，我们马上安排人去看。"
CALLBACK_SENTENCE = "喂，你好，我是王大娘，你们打来的电话我接到了。"


@dataclass(frozen=True)
class Media:
    villager: PurePosixPath
    villager_duration_s: float


@pytest.fixture(scope="session")
def asterisk_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInstance]:
    """This test process's own Asterisk (one per xdist worker), started on first use, removed at the end."""
    try:
        root = provision()
    except SandboxUnavailable as exc:  # as root a failure, see tests.support.required
        missing(f"the Asterisk sandbox could not be provisioned: {exc}")
    instance = SandboxInstance.new(root)
    data = tmp_path_factory.mktemp("asterisk-session")
    settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'unused.db'}", **instance.settings_values())
    asyncio.run(sandbox_up(settings, provision=False))
    try:
        yield instance
    finally:
        instance.stop_and_remove()


@pytest.fixture(scope="session")
def media(asterisk_instance: SandboxInstance, tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Prompts and test audio, rendered once per test run into the instance (espeak-ng; edge is unreachable here).

    Under pytest-xdist the first worker renders them and the others copy its files (rendering the 93 prompts
    is CPU work that six workers starting together would otherwise do six times over, on two cores).
    """
    data = tmp_path_factory.mktemp("asterisk-media")
    settings = make_settings(data, f"sqlite+aiosqlite:///{data / 'unused.db'}", **asterisk_instance.settings_values())
    shared = _shared_render_dir(tmp_path_factory)

    async def render() -> Media:
        runtime = build_runtime(settings)
        try:
            telephony = runtime.hotline.telephony
            assert telephony is not None and telephony.prompts is not None and telephony.media is not None
            telephony.paths.prepare()
            if shared is not None and (shared / "complete").exists():
                for source, target in (
                    (shared / "prompts", telephony.prompts.target),
                    (shared / "media", telephony.paths.media.host),
                ):
                    for copied in _copy_files(source, target):
                        telephony.paths.give_to_asterisk(copied)
            report = await telephony.prompts.install()
            assert not report.failed, report.failed
            villager = await telephony.media.sentence(VILLAGER_SENTENCE, "test-villager-says")
            await telephony.media.sentence(OPERATOR_SENTENCE, "test-operator")
            await telephony.media.sentence(CALLBACK_SENTENCE, "test-villager")
            duration = inspect(telephony.paths.media.to_host(f"{villager}.wav")).duration_s
            if shared is not None and not (shared / "complete").exists():
                _copy_files(telephony.prompts.target, shared / "prompts")
                _copy_files(telephony.paths.media.host, shared / "media")
                (shared / "complete").touch()
        finally:
            await runtime.engine.dispose()
        return Media(villager, duration)

    if shared is None:
        return asyncio.run(render())
    shared.mkdir(parents=True, exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while the first renders
        return asyncio.run(render())


def _shared_render_dir(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A folder all pytest-xdist workers of this run share (None when not under xdist)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    # Each worker's base is <run>/popen-gwN; <run> is this run's alone.
    return tmp_path_factory.getbasetemp().parent / "asterisk-media"


def _copy_files(source: Path, target: Path) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in source.iterdir():
        if path.is_file():
            copied.append(Path(shutil.copy2(path, target / path.name)))
    return copied


def ivr_marker(request: pytest.FixtureRequest) -> dict[str, Any]:
    """IVR timings a test or module asks for with ``pytest.mark.ivr(...)``."""
    marker = request.node.get_closest_marker("ivr")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def asterisk_settings(
    tmp_path: Path, database_url: str, asterisk_instance: SandboxInstance, media: Media, request: pytest.FixtureRequest
) -> Settings:
    """Settings for a service whose elected worker talks to this process's instance (a conftest's ``settings``)."""
    return make_settings(tmp_path / "data", database_url, **asterisk_instance.settings_values(**ivr_marker(request)))


@pytest.fixture
async def clean_asterisk_instance(
    asterisk_instance: SandboxInstance, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[None]:
    """Before a test: an empty spool and CDR file, and the dialplan rendered with this test's IVR settings."""
    asterisk_instance.reset()
    values = asterisk_instance.settings_values(**ivr_marker(request))
    render = make_settings(tmp_path / "render", f"sqlite+aiosqlite:///{tmp_path / 'render.db'}", **values)
    await sandbox_up(render, provision=False)
    yield


@dataclass
class Hotline:
    runtime: Runtime
    telephony: Telephony
    instance: SandboxInstance
    media: Media

    async def call(
        self,
        *,
        keys: tuple[str, ...] = (),
        speak: bool = True,
        hangup_at: HangupAt = "end",
        caller: str = "13800001111",
        caller_name: str = "",
        timeout_s: float = 120.0,
    ) -> VillagerCall:
        script = VillagerScript(
            caller=caller,
            caller_name=caller_name,
            keys=keys,
            audio=self.media.villager if speak else None,
            hangup_at=hangup_at,
        )
        call = await self.telephony.villager.call(script, timeout_s=timeout_s)
        assert call.ended
        return call

    async def settled(self, linkedid: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """What became of a call once the tracker has handed it over (settled and recordings attached)."""
        await self.telephony.tracker.wait_idle(timeout_s)
        outcome = await self.runtime.hotline.intake.outcome(linkedid)
        assert outcome is not None, f"nothing recorded for call {linkedid}"
        return outcome

    def spool(self) -> list[str]:
        return [path.name for path, _name in self.runtime.hotline.store.spool_files()]

    async def live_channels(self) -> list[dict[str, str]]:
        return await self.telephony.link.live_channels()

    async def hang_up_everything(self) -> None:
        link = self.telephony.link
        if not link.connected:
            return
        for _ in range(50):
            channels = await link.live_channels()
            if not channels:
                return
            for channel in channels:
                await link.hangup(channel["Channel"])
            await asyncio.sleep(0.1)


class Villagers:
    """Simulated villagers on a link of their own straight to Asterisk: they go on calling while the service's
    link is cut, or the service is down; and what the IVR did on each call, as the villager side saw it."""

    def __init__(self, link: AmiLink, media: Media) -> None:
        self.link = link
        self.media = media
        self.villager = SimulatedVillager(link)
        self.reached: dict[tuple[str, str], asyncio.Event] = {}
        # Per call: every prompt the IVR played (Playback's argument, in order), and the villager's channel.
        self.played: dict[str, list[str]] = {}
        self.channels: dict[str, str] = {}
        self.record_limit: dict[str, list[str]] = {}
        link.add_listener(self._listen)

    def _listen(self, event: Message) -> None:
        linkedid = event.get("Linkedid", "")
        name = event.get("Event")
        if name == "Newexten" and event.get("Application") == "Playback":
            self.played.setdefault(linkedid, []).append(event.get("AppData", ""))
        if name != "UserEvent":
            return
        user_event = event.get("UserEvent")
        if user_event == "CxVillager" and event.get("Stage") == "ready":
            self.channels[linkedid] = event.get("Channel", "")
        if user_event == "CxRecordLimit":
            self.record_limit.setdefault(linkedid, []).append(event.get("Stage", ""))
        stage = event.get("Stage", "") if user_event in ("CxStage", "CxVillager") else ""
        self.reached.setdefault((linkedid, stage), asyncio.Event()).set()

    async def wait(self, linkedid: str, stage: str, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s):
            await self.reached.setdefault((linkedid, stage), asyncio.Event()).wait()

    def prompts(self, linkedid: str) -> list[str]:
        """The names of the prompts played on a call (``digit_4``, ``recorded``…), in order."""
        return [part.rsplit("/", 1)[-1] for played in self.played.get(linkedid, []) for part in played.split("&")]

    def start(
        self,
        call_id: str,
        *,
        hangup_at: HangupAt = "end",
        keys: tuple[str, ...] = ("1",),
        caller: str = "13700000000",
        caller_name: str = "",
        repeat: int = 1,
    ) -> asyncio.Task[VillagerCall]:
        """Place a call; she says the villager's sentence ``repeat`` times over when asked to speak."""
        audio = PurePosixPath("&".join([str(self.media.villager)] * repeat))
        script = VillagerScript(caller=caller, caller_name=caller_name, keys=keys, audio=audio, hangup_at=hangup_at)
        return asyncio.ensure_future(self.villager.call(script, call_id=call_id, timeout_s=180))

    async def hang_up(self, linkedid: str) -> None:
        """She hangs up, wherever the IVR is."""
        await self.link.hangup(self.channels[linkedid])


@pytest.fixture
async def villagers(asterisk_instance: SandboxInstance, media: Media) -> AsyncIterator[Villagers]:
    link = AmiLink(
        AmiConfig("127.0.0.1", asterisk_instance.ami_port, "cunxiang", asterisk_instance.ami_secret, reconnect_max_s=1),
        clock=SystemClock(),
    )
    await link.start()
    await link.wait_connected(30)
    try:
        yield Villagers(link, media)
    finally:
        with contextlib.suppress(Exception):
            for channel in await link.live_channels():
                await link.hangup(channel["Channel"])
        await link.stop()


@pytest.fixture
async def hotline(
    server: TestServer, runtime: Runtime, settings: Settings, asterisk_instance: SandboxInstance, media: Media
) -> AsyncIterator[Hotline]:
    """The running service's telephony, once its worker's AMI link is up; every channel hung up afterwards."""
    telephony = runtime.hotline.telephony
    assert telephony is not None
    await telephony.link.wait_connected(30)
    harness = Hotline(runtime, telephony, asterisk_instance, media)
    try:
        yield harness
    finally:
        await harness.hang_up_everything()
        await telephony.tracker.wait_idle(30)
