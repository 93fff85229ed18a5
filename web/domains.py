"""Typed keys for the domain services the views use; ``server.create_app`` sets each one.

All views take their services from here, so a page that needs another
domain's service (the schedule editor lists approved notices, a notice's page
lists its schedules) reads the same key as that domain's own views — and no
view module imports another. ``web.keys`` holds the keys of the foundation
(clock, sessions, accounts, areas, health) that the app itself uses.
"""

from __future__ import annotations

from aiohttp import web

from alerts.service import AlertService
from broadcast.asrun import AsRunLog
from broadcast.dispatcher import Dispatcher
from broadcast.notices import NoticeService
from broadcast.speaker_test import SpeakerTester
from broadcast.terminals import TerminalService
from cases.part import Cases
from hotline.intake import IntakeService
from hotline.phones import PhoneRegistry
from ops.part import Ops
from phonecast.part import Phonecast
from schedules.service import ScheduleService

NOTICES = web.AppKey("notices", NoticeService)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
ASRUN = web.AppKey("asrun", AsRunLog)
TERMINALS = web.AppKey("terminals", TerminalService)
SPEAKER_TESTER = web.AppKey("speaker_tester", SpeakerTester)
SCHEDULES = web.AppKey("schedules", ScheduleService)
PHONES = web.AppKey("villager_phones", PhoneRegistry)
INTAKE = web.AppKey("hotline_intake", IntakeService)
CASES = web.AppKey("cases", Cases)
OPS = web.AppKey("ops", Ops)
ALERTS = web.AppKey("alerts", AlertService)
PHONECAST = web.AppKey("phonecast", Phonecast)
