"""What a notice says and how it will sound, with every personal number marked where it stands.

The one reading of a notice's text that the editor, the submit check, the
approver's page and the renderer share:

* ``spoken`` is exactly what the voice will read (:func:`tts.normalize.normalize`
  of the notice text, as :meth:`broadcast.production.BroadcastProducer.render_text`
  does), so the approver reads what will be heard;
* every resident ID, bank card and full mobile number is a :class:`Finding`, with
  its place in the title or body *and* its place in the spoken form, so a page
  can mark both where they stand;
* an ID or a card blocks the notice until it is masked; a mobile number waits for
  its author's decision — keep it (a public contact phone, read digit by digit) or
  mask it — recorded on the notice (``number_decisions``) for the approver to see.

Where a finding lies in the spoken form is found by reading the text again with
that number replaced by a placeholder: the spoken forms differ exactly where the
number is read (normalisation rewrites numbers in place; nothing else moves).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from broadcast.production import notice_text
from common.errors import InvalidInput
from tts import privacy
from tts.normalize import normalize

# Labels of the kinds of personal number, as a clerk calls them.
FINDING_LABELS: Final = {
    "resident_id": "身份证号",
    "bank_card": "银行卡号",
    "mobile_phone": "手机号码",
    "masked": "已隐去的号码",
}
# A number with its middle hidden (150125********1235, 139****5678): shown to the approver as a finding that was
# dealt with. The same shape the normaliser reads as 已隐去 (three stars between digits, or four at one end).
_MASKED: Final = re.compile(r"(?<![0-9*＊])(?:\d+[*＊]{3,}\d*|[*＊]{4,}\d+)(?![0-9*＊])")
_MASKED_MIN_POSITIONS: Final = 6
DECISION_LABELS: Final = {"keep": "保留（公开电话，逐位读出）", "mask": "隐去"}
# A notice longer than a few lists of names has no more numbers worth marking in its spoken form one by one.
MAX_SPOKEN_MARKS: Final = 60
_PLACEHOLDER: Final = "某"


def number_key(text: str) -> str:
    """A mobile number as its 11 digits (+86, spaces and dashes dropped): the key of its decision."""
    digits = re.sub(r"\D", "", text.translate({code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)}))
    return digits[-11:]


@dataclass(frozen=True)
class Finding:
    """One personal number: where it is in the text and in the spoken form, and what became of it."""

    kind: str
    part: str  # "title" or "body"
    start: int  # offsets in that part
    end: int
    text: str
    masked: str
    message: str
    blocking: bool
    decision: str | None  # "keep" for a mobile number its author decided to publish
    spoken_start: int | None = None
    spoken_end: int | None = None

    @property
    def label(self) -> str:
        return FINDING_LABELS[self.kind]

    @property
    def key(self) -> str:
        return number_key(self.text)

    @property
    def undecided(self) -> bool:
        return not self.blocking and self.decision is None

    @property
    def tone(self) -> str:
        """How a page marks it: must be masked, waits for a decision, kept, or masked already."""
        if self.blocking:
            return "blocking"
        return {"keep": "kept", "mask": "masked"}.get(self.decision or "", "undecided")

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "part": self.part,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "masked": self.masked,
            "message": self.message,
            "blocking": self.blocking,
            "decision": self.decision,
            "tone": self.tone,
            "number": self.key if self.kind == "mobile_phone" else None,
            "spoken_start": self.spoken_start,
            "spoken_end": self.spoken_end,
        }


@dataclass(frozen=True)
class Segment:
    """A run of text, marked when it is (the reading of) a finding."""

    text: str
    finding: Finding | None = None


@dataclass(frozen=True)
class TextReview:
    title: str
    body: str
    spoken: str | None
    spoken_error: str | None
    findings: tuple[Finding, ...]

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.blocking)

    @property
    def numbers(self) -> tuple[Finding, ...]:
        """The personal numbers still in the text (not the ones already masked)."""
        return tuple(finding for finding in self.findings if finding.kind != "masked")

    @property
    def undecided(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.undecided)

    @property
    def kept(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.decision == "keep")

    @property
    def ready(self) -> bool:
        """Nothing stands in the way of submitting it: no ID or card, every phone decided, speakable."""
        return not self.blocking and not self.undecided and self.spoken_error is None

    def segments(self, part: str) -> list[Segment]:
        text = self.title if part == "title" else self.body
        return _segments(text, [(f.start, f.end, f) for f in self.findings if f.part == part])

    def spoken_segments(self) -> list[Segment]:
        marks = [
            (f.spoken_start, f.spoken_end, f)
            for f in self.findings
            if f.spoken_start is not None and f.spoken_end is not None
        ]
        return _segments(self.spoken or "", marks)

    def refusal(self) -> str | None:
        """Why this text may not be submitted (one Chinese sentence), or None."""
        if self.blocking:
            listed = "、".join(f"{f.label} {f.masked}" for f in self.blocking)
            return f"含有不能播报或公开的个人号码（{listed}），请先隐去（可点“一键隐去”）再提交审核"
        if self.undecided:
            listed = "、".join(f.text for f in self.undecided)
            return f"通知中有完整的手机号码 {listed}：请先决定保留（公开电话，逐位读出）还是隐去，再提交审核"
        if self.spoken_error is not None:
            return f"这段文字不能播报：{self.spoken_error}"
        return None


def review_text(
    title: str,
    body: str,
    *,
    decisions: Mapping[str, Any] | None = None,
    max_chars: int = 5000,
    today: date | None = None,
) -> TextReview:
    """The review of a notice's title and body, with its author's ``decisions`` on mobile numbers."""
    decisions = decisions or {}
    title, body = title.strip(), body.strip()
    text = notice_text({"title": title, "body": body})
    # Where each part starts in the text that is read (title。body, or one of them alone).
    offsets = {"title": 0, "body": len(title) + 1 if title and body else 0}
    found: list[Finding] = []
    for part, value in (("title", title), ("body", body)):
        if not value:
            continue
        for item in privacy.find_sensitive(value, today=today):
            key = number_key(item.text)
            recorded = decisions.get(key) if item.kind is privacy.FindingKind.MOBILE_PHONE else None
            found.append(
                Finding(
                    kind=item.kind.value,
                    part=part,
                    start=item.start,
                    end=item.end,
                    text=item.text,
                    masked=privacy.mask_findings(item.text, [_at_zero(item)]),
                    message=item.message,
                    blocking=item.blocking,
                    decision=recorded.get("decision") if isinstance(recorded, Mapping) else None,
                )
            )
        for match in _MASKED.finditer(value):
            if len(match[0]) >= _MASKED_MIN_POSITIONS and not any(
                f.part == part and f.start < match.end() and match.start() < f.end for f in found
            ):
                found.append(
                    Finding(
                        kind="masked",
                        part=part,
                        start=match.start(),
                        end=match.end(),
                        text=match[0],
                        masked=match[0],
                        message="已隐去，读作“已隐去”",
                        blocking=False,
                        decision="mask",
                    )
                )
    found.sort(key=lambda finding: (finding.part != "title", finding.start))
    spoken: str | None = None
    error: str | None = None
    if text:
        try:
            spoken = normalize(text, max_chars=max_chars)
        except InvalidInput as exc:
            error = exc.message
    if spoken is not None and len(found) <= MAX_SPOKEN_MARKS:
        found = [_locate_spoken(finding, text, offsets[finding.part], spoken, max_chars) for finding in found]
    return TextReview(title, body, spoken, error, tuple(found))


def _at_zero(item: privacy.Finding) -> privacy.Finding:
    """The same finding, standing alone (to mask its own text)."""
    return privacy.Finding(item.kind, 0, len(item.text), item.text, item.checksum_valid, item.message)


def _locate_spoken(finding: Finding, text: str, offset: int, spoken: str, max_chars: int) -> Finding:
    start, end = offset + finding.start, offset + finding.end
    try:
        other = normalize(text[:start] + _PLACEHOLDER + text[end:], max_chars=max_chars + len(_PLACEHOLDER))
    except InvalidInput:
        return finding
    prefix = 0
    limit = min(len(spoken), len(other))
    while prefix < limit and spoken[prefix] == other[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and spoken[-1 - suffix] == other[-1 - suffix]:
        suffix += 1
    if len(spoken) - suffix <= prefix:
        return finding
    return Finding(**{**finding.__dict__, "spoken_start": prefix, "spoken_end": len(spoken) - suffix})


def _segments(text: str, marks: Iterable[tuple[int | None, int | None, Finding]]) -> list[Segment]:
    pieces: list[Segment] = []
    position = 0
    for start, end, finding in sorted(
        ((s, e, f) for s, e, f in marks if s is not None and e is not None), key=lambda m: m[0]
    ):
        if start < position:
            continue  # overlapping readings (two numbers read as one run): the first mark stands
        if start > position:
            pieces.append(Segment(text[position:start]))
        pieces.append(Segment(text[start:end], finding))
        position = end
    if position < len(text):
        pieces.append(Segment(text[position:]))
    return pieces


def mask_numbers(text: str, *, blocking: bool = True, keys: Iterable[str] = (), today: date | None = None) -> str:
    """``text`` with its IDs and cards masked (``blocking``), and the mobile numbers whose keys are in ``keys``."""
    wanted = set(keys)
    chosen = [
        item
        for item in privacy.find_sensitive(text, today=today)
        if (blocking and item.blocking) or (not item.blocking and number_key(item.text) in wanted)
    ]
    return privacy.mask_findings(text, chosen)


__all__ = [
    "DECISION_LABELS",
    "FINDING_LABELS",
    "Finding",
    "Segment",
    "TextReview",
    "mask_numbers",
    "number_key",
    "review_text",
]
