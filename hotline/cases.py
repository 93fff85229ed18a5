"""The case ledger's parts, built and wired together (``server.py`` hands in the configuration and the hotline).

Every process gets the workflow, the ledger queries, the statistics, replay
and callback *requests*; only the elected worker runs ``worker_services``
(placing callbacks, the automated follow-up calls), which need the hotline's
AMI link. With ``asterisk = none`` there is no link: requests for a callback
are refused with a clear message, and no follow-up call is ever placed
(operators record follow-ups by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import WorkerService
from hotline.ami import AmiLink
from hotline.callback import CallbackConfig, CallbackService
from hotline.clocks import ClockPolicy, HolidayTable
from hotline.ledger import Ledger
from hotline.recordings import RecordingStore
from hotline.replay import Replay
from hotline.sealed import CaseAccess
from hotline.stats import Statistics
from hotline.survey import SentenceRenderer, SurveyConfig, SurveyRunner
from hotline.workflow import Workflow


@dataclass(frozen=True)
class CasesConfig:
    clocks: ClockPolicy
    callbacks: CallbackConfig
    surveys: SurveyConfig
    note_max_chars: int = 5000
    page_size: int = 50
    export_max_rows: int = 1_000_000
    case_number_length: int = 8
    pin_length: int = 4


@dataclass
class Cases:
    config: CasesConfig
    access: CaseAccess
    holidays: HolidayTable
    workflow: Workflow
    ledger: Ledger
    stats: Statistics
    replay: Replay
    callbacks: CallbackService
    surveys: SurveyRunner
    worker_services: list[WorkerService] = field(default_factory=list)


def build_cases(
    config: CasesConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    store: RecordingStore,
    link: AmiLink | None,
    sentences: SentenceRenderer | None,
) -> Cases:
    access = CaseAccess(sessions, clock)
    holidays = HolidayTable(sessions, clock, config.clocks)
    workflow = Workflow(
        sessions,
        clock,
        holidays,
        access,
        note_max_chars=config.note_max_chars,
        case_number_length=config.case_number_length,
        pin_length=config.pin_length,
    )
    ledger = Ledger(
        sessions, clock, holidays, access, page_size=config.page_size, export_max_rows=config.export_max_rows
    )
    callbacks = CallbackService(sessions, clock, workflow, link, config.callbacks)
    surveys = SurveyRunner(sessions, clock, workflow, link, config.surveys, sentences=sentences)
    cases = Cases(
        config=config,
        access=access,
        holidays=holidays,
        workflow=workflow,
        ledger=ledger,
        stats=Statistics(sessions, clock, holidays),
        replay=Replay(sessions, store, access),
        callbacks=callbacks,
        surveys=surveys,
    )
    if link is not None:
        health.register_component(callbacks.health)
        health.register_component(surveys.health)
        cases.worker_services = [callbacks, surveys]
    return cases
