"""Phone numbers made comparable: the one place a number is normalised, for every part that keeps one.

A caller id arrives as whatever the carrier sends (``+86 138-0000-1111``,
``008613800001111``, ``04711234567``), and staff type numbers into forms the
same way. Every number we store goes through :func:`normalise` first — the
hotline's caller ids and villager phone registry, the cases an operator
enters by hand — so the same phone always gives the same string and a
lookup by number finds it, whichever door it came in by. (Decision: one
owner, here in ``common/`` because two domains, hotline and cases, store
numbers and neither may import the other.)
"""

from __future__ import annotations

import re
import unicodedata

# What carriers and Asterisk put in the caller id when there is no number to show.
WITHHELD_PLACEHOLDERS = frozenset({"", "anonymous", "unknown", "<unknown>", "restricted", "private", "unavailable"})
# ASCII digits only survive: \D would keep Arabic-Indic and other digits, and the number is dialled by Asterisk.
_NON_DIGITS = re.compile(r"[^0-9]")
MIN_DIGITS = 3
MAX_DIGITS = 20


def normalise(raw: str | None) -> str | None:
    """Digits only, without +86/0086/86 before a mobile number; None if nothing usable is left."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    if text.lower() in WITHHELD_PLACEHOLDERS:
        return None
    digits = _NON_DIGITS.sub("", text)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13 and digits[2] == "1":
        digits = digits[2:]
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        return None
    return digits


def mask(number: str | None) -> str | None:
    """``13800001111`` → ``138****1111``; shorter numbers keep only their last two digits (as on the case pages)."""
    if not number:
        return number
    if len(number) >= 11:
        return number[:3] + "*" * (len(number) - 7) + number[-4:]
    return "*" * max(1, len(number) - 2) + number[-2:]
