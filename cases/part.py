"""The case workflow as a part of the service: its configuration from the settings, its pieces built and wired.

Every process gets the workflow, the ledger queries, the statistics, replay,
callback *requests* and the feed of live changes (``services``: the one
service every process runs); only the elected worker runs ``worker_services``
(placing callbacks, the automated follow-up calls), which need a
:class:`cases.placing.CallLine`. What the cases need from the telephony
arrives through protocols defined here — the line (``cases.placing``), the
recording files (``cases.replay.RecordingFiles``), a sentence spoken for a
follow-up call (``cases.survey.SentenceRenderer``) — and ``server.py`` hands
in the hotline's implementations: this package imports nothing from
``hotline/``. With ``asterisk = none`` there is no line: requests for a
callback are refused with a clear message, and no follow-up call is ever
placed (operators record follow-ups by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cases.callback import CallbackConfig, CallbackService
from cases.clocks import ClockPolicy, HolidayTable
from cases.ledger import Ledger
from cases.live import ChangeFeed
from cases.placing import CallLine
from cases.replay import RecordingFiles, Replay
from cases.rollups import RollupKeeper
from cases.sealed import CaseAccess
from cases.statistics import Statistics
from cases.survey import SentenceRenderer, SurveyConfig, SurveyRunner
from cases.workflow import Workflow
from common.clock import Clock
from common.health import HealthRegistry
from common.lifecycle import Service
from settings import Settings


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
    live_poll_s: float = 0.5
    live_stream_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CasesConfig:
        config = settings.cases
        return cls(
            clocks=ClockPolicy(
                zone=settings.zone,
                acceptance_days=config.acceptance_days,
                resolution_days=config.resolution_days,
                max_extension_days=config.max_extension_days,
                followup_after_days=config.followup_after_days,
                reopen_min_days=config.reopen_min_days,
                counting=config.day_counting,
                shift_off_rest_days=config.shift_off_rest_days,
                due_soon_days=config.due_soon_days,
            ),
            callbacks=CallbackConfig(
                dial_template=config.dial_template,
                operator_ring_s=config.callback_operator_ring_s,
                request_ttl_s=config.callback_request_ttl_s,
                poll_s=config.callback_poll_s,
                result_timeout_s=config.callback_result_timeout_s,
            ),
            surveys=SurveyConfig(
                enabled=config.followup_calls,
                call_start=config.followup_call_start,
                call_end=config.followup_call_end,
                attempts=config.followup_attempts,
                retry_interval_s=config.followup_retry_interval_s,
                ring_s=config.followup_ring_s,
                poll_s=config.followup_poll_s,
                concurrent_calls=config.followup_concurrent_calls,
                result_timeout_s=config.followup_result_timeout_s,
                dial_template=config.dial_template,
            ),
            note_max_chars=config.note_max_chars,
            page_size=config.page_size,
            export_max_rows=config.export_max_rows,
            live_poll_s=config.live_poll_s,
            live_stream_s=config.live_stream_s,
            # The hotline's section: the IVR reads and says these numbers too.
            case_number_length=settings.hotline.case_number_length,
            pin_length=settings.hotline.pin_length,
        )


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
    changes: ChangeFeed
    worker_services: list[Service] = field(default_factory=list)

    @property
    def services(self) -> list[Service]:
        """Run in every process: the queue that writes refused looks at sealed cases (flushed when it stops),
        and the feed of live changes."""
        return [self.access.denials, self.changes]


def build_cases(
    config: CasesConfig,
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    health: HealthRegistry,
    recordings: RecordingFiles,
    line: CallLine | None,
    sentences: SentenceRenderer | None,
) -> Cases:
    access = CaseAccess(sessions, clock)
    holidays = HolidayTable(sessions, clock, config.clocks)
    # The dashboard's daily roll-ups follow every write to a case made through these sessions (the
    # hotline's new cases too: it shares them), in the writing transaction.
    RollupKeeper(config.clocks.zone).install(sessions)
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
    changes = ChangeFeed(sessions, poll_s=config.live_poll_s)
    # A change committed in this process is published at once (others' within live_poll_s).
    workflow.on_change(changes.changed)
    callbacks = CallbackService(sessions, clock, workflow, line, config.callbacks)
    surveys = SurveyRunner(sessions, clock, workflow, line, config.surveys, sentences=sentences)
    cases = Cases(
        config=config,
        access=access,
        holidays=holidays,
        workflow=workflow,
        ledger=ledger,
        stats=Statistics(sessions, clock, holidays),
        replay=Replay(sessions, recordings, access),
        callbacks=callbacks,
        surveys=surveys,
        changes=changes,
    )
    if line is not None:
        health.register_component(callbacks.health)
        health.register_component(surveys.health)
        cases.worker_services = [callbacks, surveys]
    return cases
