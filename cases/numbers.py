"""Case numbers (受理编号): digits only, short, with a check digit, read back digit by digit.

An old villager types her number on a keypad at the status query and hears it
read back after her call, so a case number is

* digits only (no letters, no dashes: a keypad has neither);
* at most 8 digits, the last one a check digit;
* never starting with 0 (a leading zero gets lost when a number is written
  down, typed into a spreadsheet, or read as "a number");
* random rather than sequential: a number says nothing about how many cases
  there are, and a mistyped number is unlikely to be somebody else's.

The check digit is **Damm's** (H. Michael Damm, 2004), not Luhn's. Both catch
every single wrong digit; Damm also catches every transposition of two
adjacent digits, where Luhn misses ``09`` ↔ ``90``. Both mistakes are the
typical ones on a keypad (a neighbouring key, two keys swapped), and Damm needs
no doubling step: one table lookup per digit. The tests check both claims
exhaustively over a sample of numbers.

Digits are read as Mandarin speakers read codes: 1 is 幺 (yāo), never 一,
which sounds too much like 七 on a bad line.

This module is the one owner of case numbers and PINs: the workflow draws
them for every case (however it is opened), the status query and the
command line read typed numbers with :func:`clean_typed` and :func:`is_valid`.
The hotline never handles a case number itself; it asks the workflow.
"""

from __future__ import annotations

import secrets
from typing import Final

# The quasigroup of order 10 with a zero diagonal from Damm's thesis (the table every implementation uses).
DAMM_TABLE: Final[tuple[tuple[int, ...], ...]] = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

MIN_LENGTH: Final = 5
MAX_LENGTH: Final = 8

# How Mandarin speakers read single digits aloud in codes and phone numbers.
SPOKEN_DIGITS: Final = {
    "0": "零",
    "1": "幺",
    "2": "二",
    "3": "三",
    "4": "四",
    "5": "五",
    "6": "六",
    "7": "七",
    "8": "八",
    "9": "九",
}


def damm_check_digit(digits: str) -> str:
    """The digit that, appended to ``digits``, makes the Damm checksum zero."""
    interim = 0
    for char in digits:
        if not "0" <= char <= "9":
            raise ValueError(f"not a digit: {char!r}")
        interim = DAMM_TABLE[interim][ord(char) - 48]
    return str(interim)


def is_valid(number: str, *, length: int | None = None) -> bool:
    """Digits only, no leading zero, the expected length (if given), and a correct check digit."""
    if not number.isascii() or not number.isdigit() or number.startswith("0"):
        return False
    if not MIN_LENGTH <= len(number) <= MAX_LENGTH:
        return False
    if length is not None and len(number) != length:
        return False
    return damm_check_digit(number) == "0"


def new_case_number(length: int = MAX_LENGTH) -> str:
    """A random case number of ``length`` digits, the last one Damm's check digit."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"a case number has {MIN_LENGTH} to {MAX_LENGTH} digits, not {length}")
    payload_digits = length - 1
    low = 10 ** (payload_digits - 1)
    payload = str(low + secrets.randbelow(9 * low))
    return payload + damm_check_digit(payload)


def new_pin(length: int = 4) -> str:
    """A PIN for status queries from another phone (leading zeros allowed: it is typed, never stored as a number)."""
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


def spoken(number: str) -> str:
    """``"10386"`` → ``"幺零三八六"``: the digits as they are read out, one by one."""
    return "".join(SPOKEN_DIGITS[digit] for digit in number)


def clean_typed(keys: str) -> str:
    """What a caller typed, without the ``#`` that ends the entry or a ``*`` pressed by mistake."""
    return "".join(char for char in keys if "0" <= char <= "9")
