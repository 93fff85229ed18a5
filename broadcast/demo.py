"""The demo county's sample notices (``cunxiang demo``): most approved, one left for review, the emergency a draft.

The six samples (``demo_notices.json``) go into the first demo township
through the same service an official uses: written by ``demo.staff``,
submitted, approved by ``demo.approver``. The 医保 reminder's 代办电话 is the
service station's public number, so its author keeps it (read digit by digit).
The 低保 notice still carries an ID number, so the privacy guard refuses to
submit it: it waits as its author's draft, to be masked with one click (as it
should); the emergency sample stays a draft for the emergency form. Loading twice adds
nothing. Their schedules are the schedules part's (``schedules.demo``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.service import principal_of
from broadcast.notices import NoticeInput, NoticeService
from common.errors import CunxiangError
from storage.models import Notice, Township, User

log = logging.getLogger(__name__)

DEMO_NOTICES = Path(__file__).with_name("demo_notices.json")


@dataclass
class DemoNotices:
    """What was loaded: ``skipped`` says why nothing was; ``approved`` maps a notice kind to its notice id."""

    skipped: str | None = None
    township_id: int | None = None
    approved: dict[str, int] = field(default_factory=dict)
    held: int = 0  # drafts the privacy guard would not let through (their author must mask a number first)


async def load_demo_notices(sessions: async_sessionmaker[AsyncSession], notices: NoticeService) -> DemoNotices:
    async with sessions() as session:
        if await session.scalar(select(Notice.id).limit(1)) is not None:
            return DemoNotices(skipped="demo notices already present, kept as they are")
        users = {user.username: user for user in (await session.scalars(select(User))).all()}
        township = await session.scalar(select(Township).order_by(Township.id).limit(1))
        if township is None or not {"demo.staff", "demo.approver", "demo.admin"} <= users.keys():
            return DemoNotices(skipped="no demo county: demo notices not loaded")
    staff, approver, admin = (principal_of(users[name]) for name in ("demo.staff", "demo.approver", "demo.admin"))
    loaded = DemoNotices(township_id=township.id)
    for sample in json.loads(DEMO_NOTICES.read_text(encoding="utf-8")):
        if sample["kind"] == "emergency":
            await notices.create(admin, NoticeInput(sample["kind"], sample["title"], sample["body"], township.id))
            continue
        notice = await notices.create(
            staff, NoticeInput(sample["kind"], sample["title"], sample["body"], township.id, repeats=2)
        )
        for phone in notices.review(notice).undecided:
            notice = await notices.keep_number(staff, notice.id, phone.text)
        try:
            await notices.submit(staff, notice.id)
            await notices.approve(approver, notice.id)
        except CunxiangError as exc:
            log.info("demo notice %s stays a draft: %s", notice.id, exc.message)
            loaded.held += 1
            continue
        loaded.approved[sample["kind"]] = notice.id
    return loaded
