"""The AMI link: one logged-in connection to Asterisk, kept up, with typed commands on top.

What it does, and the promises it keeps:

* **Connects, logs in, waits for FullyBooted**, then reports ``ok`` to
  ``/healthz``; a failure at any step reports ``down`` with the reason and
  retries after a backoff that doubles from ``reconnect_min_s`` up to
  ``reconnect_max_s`` (with jitter, so a fleet of services does not reconnect
  in lockstep); a connection that got as far as FullyBooted starts the next
  outage from ``reconnect_min_s`` again. A refused login is retried too, but more slowly, and said so.
* **Pings** an idle connection every ``ping_interval_s``; a ping not answered
  within ``ping_timeout_s`` drops the connection, which is then re-made. A
  half-open TCP connection is found within one ping period.
* **Never re-sends an action by itself.** An action in flight when the
  connection drops fails with :class:`AmiConnectionLost` ("may or may not have
  run"). For an ``Originate`` that matters: sending it twice would ring an
  old person twice. Callers that must know check by the channel id they chose.
* **A failed response is an exception** (:class:`AmiActionFailed`), never a
  flag to remember to check.
* **Event lists** (``CoreShowChannels``…) are collected per ActionID until
  ``EventList: Complete`` arrives, with a timeout.
* **Events go to listeners synchronously, in order**, in the event loop: a
  listener must be quick and must not raise (if it does, the error is logged
  and the link carries on). After each (re)connection the ``on_connected``
  hooks run as owned background tasks (reconciliation uses this).

Transport (socket, framing) lives in :mod:`hotline.ami.connection`; this
module holds the session and the commands.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.clock import Clock
from common.health import ComponentHealth
from common.tasks import BackgroundTasks
from hotline.ami.connection import AmiConnection
from hotline.ami.errors import (
    AmiActionFailed,
    AmiConnectionLost,
    AmiError,
    AmiLoginRefused,
    AmiNotConnected,
    AmiTimeout,
)
from hotline.ami.protocol import Message, format_action

log = logging.getLogger(__name__)

EventListener = Callable[[Message], None]
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class AmiConfig:
    host: str
    port: int
    username: str
    secret: str
    connect_timeout_s: float = 5.0
    login_timeout_s: float = 10.0
    action_timeout_s: float = 10.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    event_list_timeout_s: float = 10.0
    boot_timeout_s: float = 60.0


@dataclass
class Originated:
    """An Originate Asterisk has accepted; ``result`` resolves with its ``OriginateResponse`` event.

    ``result`` fails with :class:`AmiConnectionLost` if the link drops first:
    the call may still be going on, and must not be placed again blindly.
    """

    channel_id: str
    action_id: str
    result: asyncio.Future[Message] = field(repr=False)


@dataclass
class _Collector:
    events: list[Message] = field(default_factory=list)
    complete: asyncio.Future[None] | None = None


class AmiLink:
    name = "ami"

    def __init__(self, config: AmiConfig, *, clock: Clock, health: ComponentHealth | None = None) -> None:
        self.config = config
        self._clock = clock
        self.health = health or ComponentHealth("ami", status="standby", detail="only the active worker connects")
        self.health.extra.update({"host": f"{config.host}:{config.port}", "connections": 0})
        self._listeners: list[EventListener] = []
        self._connected_hooks: list[ConnectedHook] = []
        self._connection: AmiConnection | None = None
        self._ready: asyncio.Event | None = None
        self._booted: asyncio.Event | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._collectors: dict[str, _Collector] = {}
        self._originates: dict[str, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._id_prefix = f"cx{random.getrandbits(32):08x}-"
        self._tasks: BackgroundTasks | None = None
        self._session_tasks: BackgroundTasks | None = None
        self._stopping = False
        # Whether the current (or last) session got as far as FullyBooted: the backoff starts again then.
        self._reached_ready = False
        self.events_seen = 0
        self.connections = 0

    # -- wiring ---------------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def on_connected(self, hook: ConnectedHook) -> None:
        """Run ``hook`` (as an owned task) each time the link is up again: after start and after every outage."""
        self._connected_hooks.append(hook)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._ready = asyncio.Event()
        self._booted = asyncio.Event()
        self._stopping = False
        self._tasks = BackgroundTasks("ami")
        self.health.set("down", "connecting", at=self._clock.now())
        self._tasks.spawn(self._maintain(), "maintain")

    async def stop(self) -> None:
        if self._tasks is None:
            return
        self._stopping = True
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        if self._session_tasks is not None:
            await self._session_tasks.close()
            self._session_tasks = None
        connection = self._connection
        if connection is not None:
            connection.close()
        self._end_session("the link was stopped")
        self.health.set("standby", "stopped", at=self._clock.now())

    @property
    def connected(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def wait_connected(self, timeout_s: float) -> None:
        if self._ready is None:
            raise AmiNotConnected("the AMI link is not started")
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise AmiNotConnected(
                f"not connected to Asterisk at {self.config.host}:{self.config.port} within {timeout_s:g} s "
                f"({self.health.last_error or self.health.detail})"
            ) from None

    async def _maintain(self) -> None:
        delay = self.config.reconnect_min_s
        while True:
            self._reached_ready = False
            try:
                await self._session()
            except AmiLoginRefused as exc:
                self.health.set("down", "login refused", at=self._clock.now(), error=exc.detail)
                # Retrying a refused login quickly only fills Asterisk's security log.
                delay = max(delay, min(self.config.reconnect_max_s, 10.0))
            except (OSError, TimeoutError, AmiError) as exc:
                reason = _describe(exc)
                self.health.set("down", f"reconnecting ({reason})", at=self._clock.now(), error=reason)
            if self._reached_ready:
                # A session always ends by raising (the connection was lost), so whether it had been
                # healthy is remembered beside it: a link that got as far as FullyBooted starts again
                # from the shortest wait, however many drops came before.
                delay = self.config.reconnect_min_s
            wait = delay * random.uniform(0.8, 1.2)
            self.health.extra["retry_in_s"] = round(wait, 2)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _session(self) -> None:
        """One connection from connect to loss (always ends by raising); sets ``_reached_ready`` once ready."""
        assert self._ready is not None and self._booted is not None
        self._booted.clear()
        connection = await AmiConnection.open(
            self.config.host, self.config.port, on_messages=self._dispatch, timeout_s=self.config.connect_timeout_s
        )
        self._connection = connection
        self._session_tasks = BackgroundTasks("ami-session")
        try:
            await self._login()
            try:
                async with asyncio.timeout(self.config.boot_timeout_s):
                    await self._booted.wait()
            except TimeoutError:
                limit = self.config.boot_timeout_s
                raise AmiTimeout(f"Asterisk did not report FullyBooted within {limit:g} s") from None
            self.connections += 1
            self.health.extra["connections"] = self.connections
            self.health.extra["asterisk_ami_version"] = connection.version
            self.health.extra.pop("retry_in_s", None)
            self._ready.set()
            self._reached_ready = True
            self.health.set("ok", "connected", at=self._clock.now())
            for hook in self._connected_hooks:
                self._session_tasks.spawn(hook(), getattr(hook, "__name__", "on-connected"))
            self._session_tasks.spawn(self._ping(connection), "ping")
            reason = await connection.wait_closed()
            raise AmiConnectionLost(f"connection lost: {_describe(reason) if reason else 'closed by Asterisk'}")
        finally:
            self._ready.clear()
            session_tasks, self._session_tasks = self._session_tasks, None
            if session_tasks is not None:
                await session_tasks.close()
            connection.abort()
            self._end_session("the AMI connection was lost")

    async def _login(self) -> None:
        try:
            await self._send(
                "Login",
                {"Username": self.config.username, "Secret": self.config.secret, "Events": "on"},
                timeout_s=self.config.login_timeout_s,
                require_ready=False,
            )
        except AmiActionFailed as exc:
            raise AmiLoginRefused(
                f"Asterisk refused AMI user {self.config.username!r}: {exc.response.get('Message', '')}",
                message="电话系统拒绝登录：请检查 AMI 用户名和密码",
            ) from None

    async def _ping(self, connection: AmiConnection) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            try:
                await self._send("Ping", {}, timeout_s=self.config.ping_timeout_s)
            except AmiTimeout:
                log.warning("AMI ping unanswered for %.1f s; dropping the connection", self.config.ping_timeout_s)
                connection.abort()
                return
            except AmiError:
                return

    def _end_session(self, reason: str) -> None:
        self._connection = None
        lost = AmiConnectionLost(f"{reason}; the action may or may not have run")
        for futures in (self._pending, self._originates):
            for future in futures.values():
                if not future.done():
                    future.set_exception(lost)
            futures.clear()
        for collector in self._collectors.values():
            if collector.complete is not None and not collector.complete.done():
                collector.complete.set_exception(lost)
        self._collectors.clear()

    # -- incoming -------------------------------------------------------------------------------

    def _dispatch(self, messages: list[Message]) -> None:
        """Every message of one read, in order: responses to their callers, events to listeners."""
        for message in messages:
            if "Response" in message and "Event" not in message:
                self._answer(message)
                continue
            self.events_seen += 1
            if self._collected(message):
                continue
            for listener in self._listeners:
                try:
                    listener(message)
                except Exception:
                    log.exception("AMI event listener %r failed on %s", listener, message.get("Event"))

    def _answer(self, response: Message) -> None:
        """A response, to the caller of its action if that still waits."""
        action_id = response.get("ActionID")
        future = self._pending.get(action_id) if action_id is not None else None
        if future is not None and not future.done():
            future.set_result(response)

    def _collected(self, event: Message) -> bool:
        """Resolve what of ours waits for this event; True if it is an event list's, which only its collector sees."""
        action_id = event.get("ActionID")
        if action_id is None:
            if event.get("Event") == "FullyBooted" and self._booted is not None:
                self._booted.set()
            return False
        collector = self._collectors.get(action_id)
        if collector is not None:
            if event.get("EventList") != "Complete":
                collector.events.append(event)
            elif collector.complete is not None and not collector.complete.done():
                collector.complete.set_result(None)
            return True
        if event.get("Event") == "OriginateResponse":
            originate = self._originates.pop(action_id, None)
            if originate is not None and not originate.done():
                originate.set_result(event)
        return False

    # -- commands -------------------------------------------------------------------------------

    def _next_action_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    async def _send(
        self,
        action: str,
        fields: Mapping[str, object],
        *,
        variables: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        require_ready: bool = True,
        action_id: str | None = None,
    ) -> Message:
        connection = self._connection
        if connection is None or (require_ready and not self.connected):
            raise AmiNotConnected(f"not connected to Asterisk ({self.health.detail}); {action} was not sent")
        action_id = action_id or self._next_action_id()
        data = format_action(action, action_id, fields, variables)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        try:
            connection.send(data)
            async with asyncio.timeout(timeout_s or self.config.action_timeout_s):
                response = await future
        except TimeoutError:
            raise AmiTimeout(
                f"no answer to {action} within {timeout_s or self.config.action_timeout_s:g} s; "
                "it may or may not have run"
            ) from None
        finally:
            self._pending.pop(action_id, None)
        if response.get("Response", "").lower() == "error":
            raise AmiActionFailed(action, response)
        return response

    async def action(
        self, action: str, *, variables: Mapping[str, str] | None = None, timeout_s: float | None = None, **fields: Any
    ) -> Message:
        """Send one action and return its response; ``Response: Error`` raises :class:`AmiActionFailed`."""
        return await self._send(action, fields, variables=variables, timeout_s=timeout_s)

    async def event_list(self, action: str, *, timeout_s: float | None = None, **fields: Any) -> list[Message]:
        """An action answered by a list of events (``CoreShowChannels``…): the events, once all have come."""
        action_id = self._next_action_id()
        collector = _Collector(complete=asyncio.get_running_loop().create_future())
        self._collectors[action_id] = collector
        limit = timeout_s or self.config.event_list_timeout_s
        try:
            await self._send(action, fields, timeout_s=limit, action_id=action_id)
            assert collector.complete is not None
            async with asyncio.timeout(limit):
                await collector.complete
        except TimeoutError:
            raise AmiTimeout(f"{action}: the list did not complete within {limit:g} s") from None
        finally:
            self._collectors.pop(action_id, None)
            complete = collector.complete
            if complete is not None and complete.done() and not complete.cancelled():
                # The link dropped while the action itself was being answered: that error is the one
                # raised; the list's own (the same loss) is taken here, not left to be logged as unread.
                complete.exception()
        return collector.events

    async def originate(
        self,
        *,
        channel: str,
        channel_id: str,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        other_channel_id: str | None = None,
        caller_id: str | None = None,
        ring_timeout_s: float = 30.0,
        variables: Mapping[str, str] | None = None,
    ) -> Originated:
        """Place one call, asynchronously. Sent once and never again, whatever happens to the link.

        ``channel_id`` becomes the first channel's Uniqueid and so the call's
        Linkedid: the caller knows the call's identity before it exists.
        """
        if (context is None) == (application is None):
            raise ValueError("originate into a dialplan context or an application, not both or neither")
        action_id = self._next_action_id()
        result: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._originates[action_id] = result
        fields: dict[str, object] = {
            "Channel": channel,
            "ChannelId": channel_id,
            "OtherChannelId": other_channel_id,
            "Context": context,
            "Exten": exten,
            "Priority": (priority if priority is not None else 1) if context is not None else None,
            "Application": application,
            "Data": data,
            "CallerID": caller_id,
            "Timeout": int(ring_timeout_s * 1000),
            "Async": True,
        }
        try:
            await self._send("Originate", fields, variables=variables, action_id=action_id)
        except BaseException:
            self._originates.pop(action_id, None)
            raise
        return Originated(channel_id, action_id, result)

    async def hangup(self, channel: str, *, cause: int = 16) -> None:
        """Hang up one channel by name (or ``/regex/``); a channel already gone is not an error."""
        try:
            await self._send("Hangup", {"Channel": channel, "Cause": cause})
        except AmiActionFailed as exc:
            if "no such channel" not in exc.response.get("Message", "").lower():
                raise

    async def live_channels(self) -> list[Message]:
        """``CoreShowChannel`` events for every channel Asterisk has right now."""
        return await self.event_list("CoreShowChannels")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AmiError):
        return exc.detail or exc.message
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is Asterisk running?)"
    return f"{type(exc).__name__}: {exc}"
