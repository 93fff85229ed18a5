"""AMI event throughput: our link and call tracker, against a plain parse loop over the same bytes.

    .venv/bin/python -m bench.ami                 # replay the recorded stream ×N, report events/s
    .venv/bin/python -m bench.ami --calls 5000    # how many calls' worth to replay (default 3000)
    .venv/bin/python -m bench.ami record          # record a fresh stream from a throwaway sandbox

The stream (bench/fixtures/ami-events.txt.gz) was recorded from the real sandbox while simulated
villagers made every kind of hotline call (complaint, no key, report, status query, hang-ups,
operator unanswered). To get thousands of calls' worth it is copied with every Linkedid and
Uniqueid renamed per copy, so the tracker sees thousands of distinct calls start, progress and end.

A separate process (pinned to the other core) serves the bytes over a local TCP socket; this process
(pinned to one core) reads them three ways, one after the other:

1. **plain loop**: a socket ``recv`` loop that splits messages and parses them into dicts — the
   least any AMI client must do;
2. **our link**: ``hotline.ami.AmiLink`` (asyncio protocol, parser, dispatch) feeding
   ``hotline.calls.CallTracker`` (every event handled, every call finished and handed over);
3. **asterisk-ami** 0.1.7 with the hand-off batched (one ``call_soon_threadsafe`` per batch, not per
   event) feeding the same tracker — only if the library is installed (it is a test dependency);
4. **panoramisk** 1.4 (asyncio, no threads): its ``Manager`` with one catch-all event callback
   feeding the same tracker, every call followed to its end as for our link — only if installed
   (``pip install -e '.[bench]'``).

The goal is 20,000 events/s through the whole link (a busy county Asterisk emits a few hundred).

    .venv/bin/python -m bench.ami probe           # panoramisk where our link is tested (no timing)

``probe`` runs panoramisk through the situations tests/hotline/test_ami_link.py and
test_ami_protocol.py put our link through — a Chinese name dribbled a byte at a time, an event
callback that raises, an Originate in flight when the connection drops, an Asterisk that stops
answering, a CR/LF in a value — against a small fake AMI server, and reports what happened.
Why we keep our own client: docs/decisions/0001-our-own-ami-client.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.metadata
import json
import logging
import multiprocessing
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.figures import isolate_from_environment, write_results
from common.clock import SystemClock
from hotline.ami import AmiConfig, AmiLink, Message
from hotline.calls import CallTracker
from hotline.intake import CallFacts

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ami-events.txt.gz"
TERMINATOR = b"\r\n\r\n"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_ID_FIELD = re.compile(rb"^(Linkedid|Uniqueid|DestLinkedid|DestUniqueid): ([^\r\n]+)", re.MULTILINE)


# -- the stream ------------------------------------------------------------------------------------


def load_events() -> list[bytes]:
    data = gzip.decompress(FIXTURE.read_bytes())
    return [block + TERMINATOR for block in data.split(TERMINATOR) if block.startswith(b"Event: ")]


def multiply(events: list[bytes], calls: int) -> tuple[bytes, int, int]:
    """``events`` copied until about ``calls`` calls' worth, ids renamed per copy: (bytes, events, calls)."""
    linkedids = {
        match.group(2) for block in events for match in _ID_FIELD.finditer(block) if match.group(1) == b"Linkedid"
    }
    per_copy = max(1, len(linkedids))
    copies = max(1, round(calls / per_copy))
    ids = sorted({match.group(2) for block in events for match in _ID_FIELD.finditer(block)}, key=len, reverse=True)
    pattern = re.compile(b"|".join(re.escape(value) for value in ids))
    chunks = []
    original = b"".join(events)
    for copy in range(copies):
        suffix = f"-x{copy}".encode()

        def renamed(match: re.Match[bytes], suffix: bytes = suffix) -> bytes:
            return match.group(0) + suffix

        chunks.append(pattern.sub(renamed, original))
    return b"".join(chunks), len(events) * copies, per_copy * copies


# -- the server (another process, another core) -------------------------------------------------------


def serve(stream: bytes, port_queue: Any) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port_queue.put(listener.getsockname()[1])
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=_session, args=(connection, stream), daemon=True).start()


def _session(connection: socket.socket, stream: bytes) -> None:
    """AMI enough for a client to log in; the stream follows its first Ping (or a plain STREAM line)."""
    connection.sendall(BANNER)
    buffer = b""
    streamed = False
    while True:
        data = connection.recv(65536)
        if not data:
            return
        buffer += data
        while TERMINATOR in buffer or buffer.startswith(b"STREAM\r\n"):
            if buffer.startswith(b"STREAM\r\n"):
                connection.sendall(stream)
                buffer = buffer[8:]
                continue
            block, buffer = buffer.split(TERMINATOR, 1)
            fields = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
            action, action_id = fields.get(b"Action", b""), fields.get(b"ActionID", b"")
            if action == b"Login":
                connection.sendall(
                    b"Response: Success\r\nActionID: " + action_id + b"\r\nMessage: Authentication accepted\r\n\r\n"
                    b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
                )
            elif action == b"Ping":
                connection.sendall(b"Response: Success\r\nActionID: " + action_id + b"\r\nPing: Pong\r\n\r\n")
                if not streamed:  # the first ping after login starts the stream
                    streamed = True
                    connection.sendall(stream)
            else:
                connection.sendall(b"Response: Success\r\nActionID: " + action_id + b"\r\n\r\n")


# -- the three readers ----------------------------------------------------------------------------------


def plain_loop(port: int, expected: int) -> float:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.recv(len(BANNER))
    started = time.perf_counter()
    sock.sendall(b"STREAM\r\n")
    buffer = b""
    count = 0
    while count < expected:
        data = sock.recv(1 << 18)
        buffer += data
        end = buffer.rfind(TERMINATOR)
        if end < 0:
            continue
        complete, buffer = buffer[:end], buffer[end + 4 :]
        for block in complete.split(TERMINATOR):
            message = {}
            for line in block.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(": ")
                message[key] = value
            count += 1
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed


def new_tracker() -> tuple[CallTracker, list[int]]:
    finished = [0]

    async def on_finished(facts: CallFacts) -> None:
        finished[0] += 1

    return CallTracker(on_finished, clock=SystemClock()), finished


async def our_link(port: int, expected: int, calls: int) -> tuple[float, int]:
    config = AmiConfig("127.0.0.1", port, "bench", "bench", ping_interval_s=3600, ping_timeout_s=60)
    link = AmiLink(config, clock=SystemClock())
    tracker, finished = new_tracker()
    link.add_listener(tracker.handle)
    done = asyncio.Event()
    seen = [0]

    def count(_event: Message) -> None:
        seen[0] += 1
        if seen[0] >= expected:
            done.set()

    link.add_listener(count)
    await tracker.start()
    await link.start()
    await link.wait_connected(10)
    seen[0] = 0
    started = time.perf_counter()
    await link.action("Ping", timeout_s=60)  # the server streams after the first ping
    await asyncio.wait_for(done.wait(), 600)
    await tracker.wait_idle(600)
    elapsed = time.perf_counter() - started
    await link.stop()
    await tracker.stop()
    return elapsed, finished[0]


async def library_link(port: int, expected: int) -> float | None:
    try:
        from asterisk.ami import AMIClient, SimpleAction
    except ImportError:
        return None
    loop = asyncio.get_running_loop()
    tracker, _finished = new_tracker()
    await tracker.start()
    pending: list[Any] = []
    lock = threading.Lock()
    done = asyncio.Event()
    seen = [0]

    def drain() -> None:
        with lock:
            batch = pending[:]
            pending.clear()
        for event in batch:
            tracker.handle({"Event": event.name, **event.keys})
        seen[0] += len(batch)
        if seen[0] >= expected:
            done.set()

    def on_event(event: Any, source: Any) -> None:
        with lock:
            pending.append(event)
            first = len(pending) == 1
        if first:
            loop.call_soon_threadsafe(drain)

    client = AMIClient(address="127.0.0.1", port=port, timeout=60, buffer_size=8192)
    client.add_event_listener(on_event)
    await asyncio.to_thread(lambda: client.login(username="bench", secret="bench").response)
    await asyncio.sleep(0.2)
    seen[0] = 0
    started = time.perf_counter()
    await asyncio.to_thread(lambda: client.send_action(SimpleAction("Ping")))
    await asyncio.wait_for(done.wait(), 900)
    elapsed = time.perf_counter() - started
    client.disconnect()
    await tracker.stop()
    return elapsed


async def panoramisk_link(port: int, expected: int) -> tuple[float, int] | None:
    try:
        from panoramisk import Manager
    except ImportError:
        return None
    loop = asyncio.get_running_loop()
    tracker, finished = new_tracker()
    await tracker.start()
    logged_in = asyncio.Event()
    done = asyncio.Event()
    seen = [0]

    def on_event(_manager: Any, event: Any) -> None:
        # panoramisk's Message is a case-insensitive Mapping: the tracker reads it as it is.
        tracker.handle(event)
        seen[0] += 1
        if seen[0] >= expected:
            done.set()

    manager = Manager(
        loop=loop,
        host="127.0.0.1",
        port=port,
        username="bench",
        secret="bench",
        ping_delay=3600,  # its own pings would start the stream early; we send the first one
        ping_interval=3600,
        on_login=lambda _manager: logged_in.set(),
    )
    manager.register_event("*", on_event)
    manager.connect()
    await asyncio.wait_for(logged_in.wait(), 10)
    await asyncio.sleep(0.2)
    seen[0] = 0
    started = time.perf_counter()
    await manager.send_action({"Action": "Ping"})  # the server streams after the first ping
    await asyncio.wait_for(done.wait(), 900)
    await tracker.wait_idle(600)
    elapsed = time.perf_counter() - started
    manager.close()
    await tracker.stop()
    return elapsed, finished[0]


def measure(calls: int) -> dict[str, Any]:
    stream, events, call_count = multiply(load_events(), calls)
    queue: Any = multiprocessing.get_context("fork").Queue()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(stream, queue), daemon=True)
    server.start()
    port = queue.get(timeout=30)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    try:
        plain = plain_loop(port, events)
        link_s, finished = asyncio.run(our_link(port, events, call_count))
        library_s = asyncio.run(library_link(port, events))
        panoramisk = asyncio.run(panoramisk_link(port, events))
    finally:
        server.terminate()
        server.join()
    result: dict[str, Any] = {
        "calls": call_count,
        "events": events,
        "stream_mb": round(len(stream) / 1e6, 1),
        "plain_loop_events_per_s": round(events / plain),
        "link_and_tracker_events_per_s": round(events / link_s),
        "calls_finished_by_tracker": finished,
        "link_vs_plain": round(plain / link_s, 2),
    }
    if library_s is not None:
        result["asterisk_ami_batched_events_per_s"] = round(events / library_s)
        result["asterisk_ami_vs_plain"] = round(plain / library_s, 2)
    if panoramisk is not None:
        panoramisk_s, panoramisk_finished = panoramisk
        result["panoramisk_and_tracker_events_per_s"] = round(events / panoramisk_s)
        result["panoramisk_calls_finished_by_tracker"] = panoramisk_finished
        result["panoramisk_vs_plain"] = round(plain / panoramisk_s, 2)
    return result


# -- panoramisk where our link is tested: what happens, not how fast ----------------------------------------


class ProbeServer:
    """Just enough AMI for a client: banner, Login and Ping answered, every action recorded.

    ``silent`` stops all answers (the TCP connection stays open, as with a hung Asterisk); an Originate
    is never answered, so it stays in flight until the test drops the connection.
    """

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []
        self.connections = 0
        self.silent = False
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def count(self, action: str) -> int:
        return sum(1 for fields in self.actions if fields.get("Action", "").lower() == action.lower())

    async def send(self, data: bytes, *, byte_by_byte: bool = False) -> None:
        writer = self._writers[-1]
        for piece in [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]:
            writer.write(piece)
            await writer.drain()
            if byte_by_byte:
                await asyncio.sleep(0.002)  # one read per byte on the other side

    def drop(self) -> None:
        self._writers[-1].close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(BANNER)
        buffer = b""
        try:
            while data := await reader.read(65536):
                buffer += data
                while TERMINATOR in buffer:
                    block, buffer = buffer.split(TERMINATOR, 1)
                    text = block.decode("utf-8", "replace")
                    fields = dict(line.split(": ", 1) for line in text.split("\r\n") if ": " in line)
                    self.actions.append(fields)
                    if not self.silent:
                        writer.write(self._answer(fields))
        except ConnectionError:
            pass

    @staticmethod
    def _answer(fields: dict[str, str]) -> bytes:
        action, action_id = fields.get("Action", "").lower(), fields.get("ActionID", "")
        if action == "originate":
            return b""
        answer = f"Response: Success\r\nActionID: {action_id}\r\n"
        if action == "login":
            return (answer + "Message: Authentication accepted\r\n\r\n").encode() + (
                b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
            )
        if action == "ping":
            answer += "Ping: Pong\r\n"
        return (answer + "\r\n").encode()


async def _panoramisk(port: int, **config: Any) -> tuple[Any, list[Any]]:
    """A logged-in panoramisk Manager and the list its catch-all event callback appends to."""
    from panoramisk import Manager

    logged_in = asyncio.Event()
    events: list[Any] = []
    manager = Manager(
        loop=asyncio.get_running_loop(),
        host="127.0.0.1",
        port=port,
        username="probe",
        secret="probe",
        on_login=lambda _manager: logged_in.set(),
        **{"ping_delay": 3600, "ping_interval": 3600, **config},
    )
    manager.register_event("*", lambda _manager, event: events.append(event))
    manager.connect()
    await asyncio.wait_for(logged_in.wait(), 10)
    await asyncio.sleep(0.1)  # FullyBooted
    events.clear()
    return manager, events


async def probe_chinese_name_dribbled() -> dict[str, Any]:
    server = ProbeServer()
    manager, events = await _panoramisk(await server.start())
    event = "Event: Newchannel\r\nLinkedid: 1700000000.1\r\nCallerIDName: 王大娘\r\n\r\n".encode()
    await server.send(event, byte_by_byte=True)
    await asyncio.sleep(0.3)
    manager.close()
    await server.stop()
    received = [dict(message.items()) for message in events]
    intact = [message.get("CallerIDName") for message in received] == ["王大娘"]
    return {"sent_caller_id_name": "王大娘", "received_events": received, "intact": intact}


async def probe_raising_callback() -> dict[str, Any]:
    server = ProbeServer()
    manager, events = await _panoramisk(await server.start(), reconnect_timeout=1)

    def fails(_manager: Any, _event: Any) -> None:
        raise RuntimeError("a bug in one listener")

    manager.register_event("UserEvent", fails)
    others = b"".join(f"Event: Newchannel\r\nLinkedid: 17000000{n:02d}.1\r\n\r\n".encode() for n in range(5))
    await server.send(b"Event: UserEvent\r\nUserEvent: CxStage\r\n\r\n" + others)
    await asyncio.sleep(0.5)
    after_raise = len(events) - 1  # the catch-all callback saw the UserEvent itself first
    await asyncio.sleep(1.5)
    connections = server.connections
    manager.close()
    await server.stop()
    return {"events_after_the_raising_one_sent": 5, "delivered": after_raise, "connections": connections}


async def probe_originate_in_flight_when_the_link_drops() -> dict[str, Any]:
    server = ProbeServer()
    manager, _events = await _panoramisk(await server.start(), reconnect_timeout=1)
    future = manager.send_action(
        {"Action": "Originate", "Channel": "Local/13800001111@cx-callback", "Context": "cx-callback", "Async": "true"}
    )
    await asyncio.sleep(0.2)
    server.drop()  # the link drops with the Originate unanswered: did the call start? nobody knows
    await asyncio.sleep(2.5)  # panoramisk reconnects after reconnect_timeout and logs in again
    originates, connections, caller_told = server.count("Originate"), server.connections, future.done()
    manager.close()
    await server.stop()
    return {"originates_received": originates, "connections": connections, "caller_told_of_the_drop": caller_told}


async def probe_silent_asterisk() -> dict[str, Any]:
    server = ProbeServer()
    manager, _events = await _panoramisk(await server.start(), ping_delay=1, ping_interval=1)
    server.silent = True  # the TCP connection stays open; nothing is answered any more
    pings_before = server.count("Ping")
    answered = True
    try:
        await asyncio.wait_for(manager.send_action({"Action": "CoreShowChannels"}), 5)
    except TimeoutError:
        answered = False
    pings = server.count("Ping") - pings_before
    connections = server.connections
    manager.close()
    await server.stop()
    return {"seconds_silent": 5, "pings_sent": pings, "reconnected": connections > 1, "action_answered": answered}


async def probe_line_break_in_a_value() -> dict[str, Any]:
    server = ProbeServer()
    manager, _events = await _panoramisk(await server.start())
    # A caller name, as a caller could set it, passed on in a variable.
    name = "王大娘\r\n\r\nAction: Originate\r\nChannel: PJSIP/00441234567@trunk\r\nApplication: Wait"
    manager.send_action({"Action": "Setvar", "Channel": "PJSIP/op1-00000001", "Variable": f"CX_NAME={name}"})
    await asyncio.sleep(0.3)
    originates = server.count("Originate")
    manager.close()
    await server.stop()
    return {"originates_received": originates}


async def probe() -> dict[str, Any]:
    try:
        version = importlib.metadata.version("panoramisk")
    except importlib.metadata.PackageNotFoundError:
        return {"error": "panoramisk is not installed: pip install -e '.[bench]'"}
    # panoramisk and asyncio log the failures we provoke; the results below say what happened.
    for name in ("panoramisk", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return {
        "panoramisk": version,
        "chinese_name_dribbled_one_byte_at_a_time": await probe_chinese_name_dribbled(),
        "one_event_callback_raises": await probe_raising_callback(),
        "originate_in_flight_when_the_link_drops": await probe_originate_in_flight_when_the_link_drops(),
        "asterisk_stops_answering": await probe_silent_asterisk(),
        "line_break_in_a_value": await probe_line_break_in_a_value(),
    }


# -- recording a stream from the real sandbox -------------------------------------------------------------


async def record(out: Path, rounds: int) -> dict[str, Any]:
    from bench._sandbox import hotline_service
    from hotline.dialtest import VillagerScript

    with tempfile.TemporaryDirectory(prefix="cx-bench-record-") as workdir:
        async with hotline_service(Path(workdir)) as service:
            config = service.telephony.config.ami
            reader, writer = await asyncio.open_connection(config.host, config.port)
            await reader.readline()
            writer.write(f"Action: Login\r\nUsername: {config.username}\r\nSecret: {config.secret}\r\n\r\n".encode())
            captured = bytearray()

            async def capture() -> None:
                while data := await reader.read(65536):
                    captured.extend(data)

            task = asyncio.ensure_future(capture())
            villager = service.telephony.villager
            audio = service.villager_audio
            scripts: list[Callable[[str], VillagerScript]] = [
                lambda _n: VillagerScript(keys=("1",), audio=audio),
                lambda _n: VillagerScript(keys=(), audio=audio),
                lambda _n: VillagerScript(keys=("3",), audio=audio, hangup_at="recording"),
                lambda _n: VillagerScript(hangup_at="welcome"),
                lambda _n: VillagerScript(keys=("0",), audio=audio),
                lambda number: VillagerScript(keys=("2", f"{number}#")),
            ]
            number = "10000000"
            calls = 0
            for _round in range(rounds):
                results = await asyncio.gather(*(villager.call(make(number)) for make in scripts))
                calls += len(results)
                for result in results:
                    if result.read_back:
                        number = result.read_back
            await service.telephony.tracker.wait_idle(60)
            await asyncio.sleep(1)
            writer.close()
            task.cancel()
    text = bytes(captured)
    events = [block for block in text.split(TERMINATOR) if block.startswith(b"Event: ")]
    await asyncio.to_thread(_save_fixture, out, TERMINATOR.join(events) + TERMINATOR)
    return {"calls": calls, "events": len(events), "bytes": len(text), "fixture": str(out)}


def _save_fixture(out: Path, stream: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(stream, 9))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=["throughput", "record", "probe"], default="throughput")
    parser.add_argument("--calls", type=int, default=3000, help="calls' worth of events to replay")
    parser.add_argument("--rounds", type=int, default=4, help="record: rounds of six concurrent calls")
    parser.add_argument("--quick", action="store_true", help="throughput over 300 calls' worth of events")
    parser.add_argument("--json", type=Path, help="throughput: also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.quick:
        args.calls = 300
    if args.action == "record":
        print(json.dumps(asyncio.run(record(FIXTURE, args.rounds)), indent=2))
        return
    if args.action == "probe":
        print(json.dumps(asyncio.run(probe()), indent=2, ensure_ascii=False))
        return
    results = measure(args.calls)
    print(json.dumps(results, indent=2))
    write_results(args.json, results)


if __name__ == "__main__":
    main()
