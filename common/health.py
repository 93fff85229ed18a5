"""Component health for /healthz: each part reports its own state; transitions are logged once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Status = Literal["ok", "degraded", "down", "disabled", "standby"]

log = logging.getLogger(__name__)


@dataclass
class ComponentHealth:
    """The last known state of one component, kept by the component itself."""

    name: str
    status: Status = "down"
    detail: str = ""
    since: datetime | None = None
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def set(self, status: Status, detail: str = "", *, at: datetime | None = None, error: str | None = None) -> None:
        if status != self.status:
            # Log transitions, not every probe: one line when a link fails, one when it recovers.
            level = logging.INFO if status in ("ok", "disabled", "standby") else logging.WARNING
            log.log(level, "%s: %s -> %s %s", self.name, self.status, status, detail or error or "")
            self.since = at
        self.status = status
        self.detail = detail
        if error is not None:
            self.last_error = error

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": self.status}
        if self.detail:
            result["detail"] = self.detail
        if self.since:
            result["since"] = self.since.isoformat()
        if self.last_error:
            result["last_error"] = self.last_error
        result.update(self.extra)
        return result


Probe = Callable[[], Awaitable[dict[str, Any]]]


class HealthRegistry:
    """Collects probes from every component; /healthz asks them all."""

    def __init__(self) -> None:
        self._probes: dict[str, Probe] = {}
        self._broken: set[str] = set()  # probes that raised at their last call

    def register(self, name: str, probe: Probe) -> None:
        self._probes[name] = probe

    def register_component(self, component: ComponentHealth) -> None:
        async def probe() -> dict[str, Any]:
            return component.as_dict()

        self._probes[component.name] = probe

    async def report(self) -> dict[str, dict[str, Any]]:
        report: dict[str, dict[str, Any]] = {}
        for name, probe in self._probes.items():
            try:
                report[name] = await probe()
            except Exception as exc:  # a broken probe must not break /healthz
                if name not in self._broken:
                    # A bug: its traceback, once, when the probe starts failing (not at every poll).
                    log.exception("health probe %s failed", name)
                    self._broken.add(name)
                report[name] = {"status": "down", "detail": f"probe failed: {exc!r}"}
            else:
                self._broken.discard(name)
        return report
