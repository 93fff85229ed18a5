"""The sources that are fetched rather than pushed: a feed polled over HTTP, and a drop folder.

Both run only on the elected worker and hand each message to :meth:`AlertService.receive`, which uses it whole
or records its refusal (shown on the page); de-duplication by sender and identifier makes a message seen twice
(a feed listing it again, a file copied twice) harmless.

* :class:`FeedPoller` — per ``pull`` source, every ``poll_interval_s``: a conditional GET (If-None-Match /
  If-Modified-Since from the last answer); 304 is nothing new. The answer is a CAP message itself, or an Atom
  or RSS feed whose entries link to CAP messages (each fetched once: the links fetched are kept in the database,
  ``alert_feed_entries``, so a restart fetches none of them again). A failure doubles the wait
  (at most ``MAX_BACKOFF`` times the interval) and is kept on the source (``last_error``) for the page and
  /healthz.
* :class:`FolderWatcher` — per ``folder`` source: every ``*.xml`` in the folder is read (off the event loop,
  at most the size limit) and moved to ``processed/`` or ``refused/`` beside it, so a USB stick or an FTP
  mirror can be refilled at will.
* :class:`RepeatRunner` — the alerts' clock: ends what plays past its ``expires`` and plays the repeats due.

Each runs its rounds as a :class:`common.periodic.Periodic` (owned, stoppable, a failed round logged).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from lxml import etree

from alerts.cap import CAP_NS, CapRefused
from alerts.service import AlertService
from common.clock import Clock
from common.periodic import Periodic
from storage.models import AlertSource

log = logging.getLogger(__name__)

ATOM_NS = "http://www.w3.org/2005/Atom"
MAX_BACKOFF = 16
FETCH_TIMEOUT_S = 30.0


def feed_links(data: bytes) -> list[str] | None:
    """The entry links of an Atom or RSS feed; None when ``data`` is a CAP message (or not a feed at all)."""
    if b"<!DOCTYPE" in data.upper() or b"<!ENTITY" in data.upper():
        return []  # never parsed: the same rule as for CAP messages
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if root.tag == f"{{{CAP_NS}}}alert":
        return None
    links: list[str] = []
    if root.tag == f"{{{ATOM_NS}}}feed":
        for entry in root.iter(f"{{{ATOM_NS}}}entry"):
            for link in entry.iter(f"{{{ATOM_NS}}}link"):
                href = link.get("href")
                if href and link.get("rel", "alternate") in ("alternate", "related", "enclosure"):
                    links.append(href)
                    break
    elif root.tag == "rss":
        for item in root.iter("item"):
            item_link = item.find("link")
            if item_link is not None and item_link.text:
                links.append(item_link.text.strip())
    return links


@dataclass
class _PullState:
    wait_s: float
    due: datetime


class FeedPoller:
    name = "alert-feeds"

    def __init__(self, service: AlertService, clock: Clock, *, tick_s: float = 1.0) -> None:
        self._service = service
        self._clock = clock
        self._state: dict[int, _PullState] = {}
        self._http: aiohttp.ClientSession | None = None
        self._rounds = Periodic(self.name, self.poll_due, interval_s=tick_s)

    async def start(self) -> None:
        if self._rounds.running:
            return
        await self.open()
        await self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()
        await self.close()

    async def open(self) -> None:
        """The HTTP client (``start`` opens it; a test polls by hand between ``open`` and ``close``)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wait_s(self, source_id: int) -> float | None:
        """How long this source waits before its next poll (doubled after each failure)."""
        state = self._state.get(source_id)
        return state.wait_s if state else None

    async def poll_due(self) -> None:
        """Poll every active pull source whose time has come (the loop's step; tests call it directly)."""
        now = self._clock.now()
        for source in await self._service.sources_of_kind("pull"):
            state = self._state.setdefault(source.id, _PullState(float(source.poll_interval_s), now))
            if now < state.due:
                continue
            try:
                await self._poll(source, state)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                state.wait_s = min(state.wait_s * 2, source.poll_interval_s * MAX_BACKOFF)
                await self._service.note_poll(source.id, error=f"{type(exc).__name__}: {exc}"[:500])
            else:
                state.wait_s = float(source.poll_interval_s)
            state.due = self._clock.now() + timedelta(seconds=state.wait_s)

    async def _poll(self, source: AlertSource, state: _PullState) -> None:
        assert self._http is not None and source.url
        headers = {}
        if source.etag:
            headers["If-None-Match"] = source.etag
        if source.last_modified:
            headers["If-Modified-Since"] = source.last_modified
        async with self._http.get(source.url, headers=headers) as response:
            if response.status == 304:
                await self._service.note_poll(source.id)
                return
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=f"HTTP {response.status}"
                )
            data = await self._read(response)
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        links = feed_links(data)
        if links is None:
            await take(self._service, source.id, data, origin=source.url)
        else:
            seen = await self._service.feed_links_seen(source.id, links)
            for link in links:
                if link in seen:
                    continue
                async with self._http.get(link) as entry:
                    if entry.status != 200:
                        raise aiohttp.ClientResponseError(
                            entry.request_info, (), status=entry.status, message=f"HTTP {entry.status} for {link}"
                        )
                    await take(self._service, source.id, await self._read(entry), origin=link)
                await self._service.remember_feed_link(source.id, link)
        await self._service.note_poll(source.id, etag=etag, last_modified=modified)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self._service.config.max_bytes
        data = await response.content.read(limit + 1)
        return data  # one byte over the limit is enough for parse_cap to refuse it as too large


async def take(service: AlertService, source_id: int, data: bytes, *, origin: str) -> bool:
    """Hand one fetched message to the service; whether it was taken (a refusal is recorded with its reason)."""
    try:
        await service.receive(source_id, data, origin=origin[:1024])
    except CapRefused:
        return False
    return True


class FolderWatcher:
    name = "alert-folders"

    def __init__(self, service: AlertService, *, interval_s: float = 5.0) -> None:
        self._service = service
        self._rounds = Periodic(self.name, self.scan, interval_s=interval_s)

    async def start(self) -> None:
        await self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def scan(self) -> int:
        """Take every message waiting in every folder source; returns how many files were taken."""
        taken = 0
        for source in await self._service.sources_of_kind("folder"):
            if not source.folder:
                continue
            folder = Path(source.folder)
            for path in await asyncio.to_thread(_waiting, folder):
                data = await asyncio.to_thread(_read_limited, path, self._service.config.max_bytes)
                taken_whole = await take(self._service, source.id, data, origin=str(path))
                await asyncio.to_thread(_move, path, folder / ("processed" if taken_whole else "refused"))
                taken += 1
            await self._service.note_poll(source.id)
        return taken


def _waiting(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() == ".xml")


def _read_limited(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(limit + 1)


def _move(path: Path, into: Path) -> None:
    into.mkdir(exist_ok=True)
    target = into / path.name
    number = 1
    while target.exists():
        target = into / f"{path.stem}.{number}{path.suffix}"
        number += 1
    path.rename(target)


class RepeatRunner:
    """The alerts' clock, every ``tick_s``: ends what still plays past its ``expires``, then plays the repeats
    that are due (``AlertService.end_expired``, ``AlertService.repeat_due``)."""

    name = "alert-repeats"

    def __init__(self, service: AlertService, *, tick_s: float = 5.0) -> None:
        self._service = service
        self._rounds = Periodic(self.name, self.run_due, interval_s=tick_s)

    async def start(self) -> None:
        await self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def run_due(self) -> None:
        await self._service.end_expired()
        await self._service.repeat_due()


__all__ = ["FeedPoller", "FolderWatcher", "RepeatRunner", "feed_links", "take"]
