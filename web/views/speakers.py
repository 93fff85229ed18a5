"""The speakers page (终端): a county's five hundred speakers by township, filtered by status, a page at a time.

A speaker's status is derived from what happened to it, never assumed:

* 停用 — switched off by an admin;
* 故障 — the last play or test sent to it failed (whatever its transport), until one succeeds;
* 在线 / 离线 — a 4G terminal seen within its heartbeat window, or not; a pushed speaker (SIP paging, RTP,
  a sound card) is 在线 once its last play succeeded;
* 暂无记录 — a pushed speaker nothing has been played to yet (nothing says whether it works).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from common.errors import InvalidInput
from storage.models import TRANSPORT_LABELS
from web import keys
from web.render import render
from web.validation import ApiModel, read_query

Status = Literal["online", "offline", "fault", "unknown", "disabled"]
STATUS_LABELS: dict[str, str] = {
    "online": "在线",
    "offline": "离线",
    "fault": "故障",
    "unknown": "暂无记录",
    "disabled": "停用",
}
PAGE_SIZE = 50


def status_of(row: dict[str, Any]) -> str:
    """See the module's docstring."""
    if not row["enabled"]:
        return "disabled"
    if row["last_failed"]:
        return "fault"
    if row["online"] is not None:
        return "online" if row["online"] else "offline"
    return "online" if row["last_state"] is not None else "unknown"


class SpeakerQuery(ApiModel):
    township_id: int | None = None
    status: Status | None = None
    page: int = Field(1, ge=1, le=100_000)


@dataclass
class TownshipGroup:
    township_id: int
    name: str
    rows: list[dict[str, Any]]
    counts: dict[str, int]


async def page(request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
    error = None
    try:
        query = read_query(request, SpeakerQuery)
    except InvalidInput as exc:
        error, query = exc.message, SpeakerQuery()
    townships = await request.app[keys.AREAS].list_townships(keys.principal(request))
    names = {township.id: township.name for township in townships}
    for row in rows:
        row["status"] = status_of(row)
        row["transport_label"] = TRANSPORT_LABELS.get(row["transport"], row["transport"])
    order = {township.id: index for index, township in enumerate(townships)}
    rows.sort(key=lambda row: (order.get(row["township_id"], len(order)), row["village"], row["zone"], row["id"]))
    totals = {key: sum(1 for row in rows if row["status"] == key) for key in STATUS_LABELS}
    counts_by_township: dict[int, dict[str, int]] = {}
    for row in rows:
        counts = counts_by_township.setdefault(row["township_id"], dict.fromkeys(STATUS_LABELS, 0))
        counts[row["status"]] += 1
    shown = [
        row
        for row in rows
        if (query.township_id is None or row["township_id"] == query.township_id)
        and (query.status is None or row["status"] == query.status)
    ]
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    current = min(query.page, pages)
    groups: list[TownshipGroup] = []
    for row in shown[(current - 1) * PAGE_SIZE : current * PAGE_SIZE]:
        if not groups or groups[-1].township_id != row["township_id"]:
            name = names.get(row["township_id"], "")
            groups.append(TownshipGroup(row["township_id"], name, [], counts_by_township[row["township_id"]]))
        groups[-1].rows.append(row)
    return await render(
        request,
        "broadcast/speakers.html",
        {
            "groups": groups,
            "townships": townships,
            "query": query,
            "error": error,
            "totals": totals,
            "matching": len(shown),
            "total": len(rows),
            "page": current,
            "pages": pages,
            "STATUS_LABELS": STATUS_LABELS,
        },
    )
