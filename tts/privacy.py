"""Find the personal numbers a notice must never read out or publish.

Disclosure notices (低保 recipients, subsidy lists) name people. Their resident
ID numbers and bank card numbers must never go on air or on a notice board:
those findings are *blocking* (the approval flow refuses the notice until they
are masked). A private person's full mobile number is a warning: it should be
masked too, but a clerk may have a reason to publish a contact number. Service
and hotline numbers (12345, 12119, 0471-…) are never findings.

* :func:`find_sensitive` lists what was found, with character offsets;
* :func:`mask` hides all of it (150125********1235, 6222********1234, 138****1111);
  :func:`mask_findings` hides the chosen ones (a clerk keeps a public contact phone);
* :func:`check` does both at once for the approval flow.

Masking keeps the text's length and separators, so offsets stay valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

__all__ = [
    "CheckResult",
    "Finding",
    "FindingKind",
    "check",
    "find_sensitive",
    "luhn_valid",
    "mask",
    "mask_findings",
    "resident_id_check_character",
]


class FindingKind(StrEnum):
    RESIDENT_ID = "resident_id"
    BANK_CARD = "bank_card"
    MOBILE_PHONE = "mobile_phone"


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive number in a text; ``start``/``end`` are character offsets."""

    kind: FindingKind
    start: int
    end: int
    text: str
    # For IDs: does the GB 11643-1999 check digit match? For cards: always True
    # (only Luhn-valid numbers are reported). None where there is no check digit
    # (15-digit IDs, mobile numbers).
    checksum_valid: bool | None
    message: str

    @property
    def blocking(self) -> bool:
        """IDs and cards stop a notice; a mobile number is only a warning."""
        return self.kind is not FindingKind.MOBILE_PHONE


@dataclass(frozen=True, slots=True)
class CheckResult:
    findings: tuple[Finding, ...]
    blocking: bool
    masked_text: str

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if not finding.blocking)


# --------------------------------------------------------------------------
# Resident ID numbers (GB 11643-1999)
# --------------------------------------------------------------------------

# First two digits: the province-level region. 11-15 North China (15 is Inner
# Mongolia), 21-23 Northeast, 31-37 East, 41-46 Central South, 50-54 Southwest,
# 61-65 Northwest, 71 Taiwan, 81/82 Hong Kong/Macao.
_PROVINCE_CODES: Final = frozenset(
    {
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        71,
        81,
        82,
    }
)
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARACTERS: Final = "10X98765432"  # indexed by (weighted sum mod 11)


def resident_id_check_character(first17: str) -> str:
    """The GB 11643-1999 check character (0-9 or X) for the first 17 digits."""
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValueError("expected the first 17 digits of a resident ID")
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARACTERS[total % 11]


def _birth_date(year: int, month: int, day: int, today: date) -> date | None:
    if year < 1900:
        return None
    try:
        born = date(year, month, day)
    except ValueError:
        return None  # 19580230 is not a day anyone was born on
    return born if born <= today else None


def _plausible_region(digits: str) -> bool:
    return int(digits[:2]) in _PROVINCE_CODES


def _plausible_id18(digits: str, today: date) -> bool:
    birth = _birth_date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]), today)
    return _plausible_region(digits) and birth is not None


def _plausible_id15(digits: str, today: date) -> bool:
    # Old-style IDs (before 1999) carry a two-digit year of the 1900s.
    birth = _birth_date(1900 + int(digits[6:8]), int(digits[8:10]), int(digits[10:12]), today)
    return _plausible_region(digits) and birth is not None


# --------------------------------------------------------------------------
# Bank cards
# --------------------------------------------------------------------------

# Issuer prefixes seen on cards in China: 62 UnionPay (most debit cards), 60/65,
# 4 Visa, 51-55 and 22-27 Mastercard, 35 JCB, 95 (older domestic cards, 9558…).
_CARD_PREFIX: Final = re.compile(r"62|60|65|4|5[1-5]|2[2-7]|35|95", re.ASCII)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _plausible_card(digits: str) -> bool:
    return 16 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_valid(digits)


# --------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------

# A candidate must stand alone: a digit (or a separator and a digit) right
# next to it means it is part of a longer number and is left alone.
_ALONE_BEFORE: Final = r"(?<![0-9])"
_ALONE_AFTER: Final = r"(?![0-9])"

# Written whole, grouped 6-8-4 (region, birth date, sequence) or 6-4-4-4 (as ID readers print it).
_ID18: Final = re.compile(
    _ALONE_BEFORE + r"(?:\d{6}([ -]?)\d{8}\1|\d{6}([ -])\d{4}\2\d{4}\2)\d{3}[0-9Xx]" + _ALONE_AFTER, re.ASCII
)
_ID15: Final = re.compile(_ALONE_BEFORE + r"\d{15}" + _ALONE_AFTER, re.ASCII)
_CARD: Final = re.compile(
    _ALONE_BEFORE + r"(?:\d{16,19}|\d{4}([ -])\d{4}(?:\1\d{4}){2}(?:\1\d{1,3})?(?!\1[0-9]))" + _ALONE_AFTER,
    re.ASCII,
)
_MOBILE: Final = re.compile(
    _ALONE_BEFORE + r"(?:\+?86[ -]?)?(1[3-9]\d([ -]?)\d{4}\2\d{4})" + _ALONE_AFTER + r"(?!\2[0-9])",
    re.ASCII,
)

# Full-width digits (１５０１２５…) are digits too; mapping them one to one keeps offsets.
_TO_ASCII: Final[dict[int, int]] = {
    **{code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)},
    ord("Ｘ"): ord("X"),
    ord("ｘ"): ord("x"),
    ord("－"): ord("-"),
    ord("\u3000"): ord(" "),
}


def _digits(candidate: str) -> str:
    return re.sub(r"[^0-9Xx]", "", candidate)


def _position(start: int) -> str:
    return f"第{start + 1}个字符处"


def _scan_ids(text: str, today: date) -> Iterator[Finding]:
    for match in _ID18.finditer(text):
        digits = _digits(match[0])
        if not _plausible_id18(digits, today):
            continue
        valid = resident_id_check_character(digits[:17]) == digits[17].upper()
        verdict = "校验位正确" if valid else "校验位不符，可能抄错了一位"
        yield Finding(
            FindingKind.RESIDENT_ID,
            match.start(),
            match.end(),
            match[0],
            valid,
            f"{_position(match.start())}疑似身份证号（{verdict}），不能播报或公开，请隐去中间部分。",
        )
    for match in _ID15.finditer(text):
        if _plausible_id15(match[0], today):
            yield Finding(
                FindingKind.RESIDENT_ID,
                match.start(),
                match.end(),
                match[0],
                None,
                f"{_position(match.start())}疑似15位旧身份证号，不能播报或公开，请隐去中间部分。",
            )


def _scan_cards(text: str) -> Iterator[Finding]:
    for match in _CARD.finditer(text):
        if _plausible_card(_digits(match[0])):
            yield Finding(
                FindingKind.BANK_CARD,
                match.start(),
                match.end(),
                match[0],
                True,
                f"{_position(match.start())}疑似银行卡号，不能播报或公开，请隐去中间部分。",
            )


def _scan_mobiles(text: str) -> Iterator[Finding]:
    for match in _MOBILE.finditer(text):
        start, end = match.span(1)
        yield Finding(
            FindingKind.MOBILE_PHONE,
            start,
            end,
            match[1],
            None,
            f"{_position(start)}有完整的手机号码，如非公开的办事电话，建议只保留前三位和后四位。",
        )


def _overlaps(finding: Finding, taken: Iterable[Finding]) -> bool:
    return any(finding.start < other.end and other.start < finding.end for other in taken)


def find_sensitive(text: str, *, today: date | None = None) -> list[Finding]:
    """Every resident ID, bank card and private mobile number in ``text``, in order.

    ``today`` bounds plausible birth dates (default: the system date). An ID is
    reported whether or not its check digit is right (a mistyped ID is still a
    person's ID); a number is reported once, as an ID before a card before a phone.
    """
    scan = text.translate(_TO_ASCII)
    found: list[Finding] = []
    for finding in (
        *_scan_ids(scan, today or date.today()),
        *_scan_cards(scan),
        *_scan_mobiles(scan),
    ):
        if not _overlaps(finding, found):
            found.append(_with_original_text(finding, text))
    return sorted(found, key=lambda finding: finding.start)


def _with_original_text(finding: Finding, text: str) -> Finding:
    original = text[finding.start : finding.end]
    if original == finding.text:
        return finding
    return Finding(finding.kind, finding.start, finding.end, original, finding.checksum_valid, finding.message)


# --------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------

# How many digits stay visible at each end.
_KEEP: Final = {
    FindingKind.RESIDENT_ID: (6, 4),  # region code and the last four
    FindingKind.BANK_CARD: (4, 4),  # 6222********1234
    FindingKind.MOBILE_PHONE: (3, 4),  # 138****1111
}


def _masked(finding: Finding) -> str:
    head, tail = _KEEP[finding.kind]
    digit_count = sum(char.isalnum() for char in finding.text)
    masked: list[str] = []
    seen = 0
    for char in finding.text:
        if not char.isalnum():
            masked.append(char)  # separators stay, so grouping and length survive
            continue
        masked.append(char if seen < head or seen >= digit_count - tail else "*")
        seen += 1
    return "".join(masked)


def _apply_masks(text: str, findings: Iterable[Finding]) -> str:
    pieces: list[str] = []
    position = 0
    for finding in sorted(findings, key=lambda finding: finding.start):
        pieces.append(text[position : finding.start])
        pieces.append(_masked(finding))
        position = finding.end
    pieces.append(text[position:])
    return "".join(pieces)


def mask_findings(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with only the given findings (found in this same text) masked: a one-click fix of some of them."""
    return _apply_masks(text, findings)


def mask(text: str, *, today: date | None = None) -> str:
    """``text`` with every finding masked: IDs, cards and mobile numbers alike."""
    return _apply_masks(text, find_sensitive(text, today=today))


def check(text: str, *, today: date | None = None) -> CheckResult:
    """What the approval flow needs: the findings, whether any blocks, the masked text."""
    findings = tuple(find_sensitive(text, today=today))
    return CheckResult(
        findings=findings,
        blocking=any(finding.blocking for finding in findings),
        masked_text=_apply_masks(text, findings),
    )
