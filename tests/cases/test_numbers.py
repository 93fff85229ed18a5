"""Case numbers: digits only, at most 8, Damm's check digit catches every typo a keypad invites."""

from __future__ import annotations

import random

import pytest

from cases import numbers as casenumbers


def sample_numbers(count: int, length: int = 8) -> list[str]:
    generator = random.Random(20261125)
    numbers = []
    for _ in range(count):
        payload = str(generator.randrange(10 ** (length - 2), 10 ** (length - 1)))
        numbers.append(payload + casenumbers.damm_check_digit(payload))
    return numbers


def test_damm_check_digit_matches_the_published_example() -> None:
    # Damm's worked example: 572 has check digit 4.
    assert casenumbers.damm_check_digit("572") == "4"
    assert casenumbers.damm_check_digit("5724") == "0"
    assert casenumbers.damm_check_digit("5727") != "0"


@pytest.mark.parametrize("length", [5, 6, 7, 8])
def test_new_case_numbers_are_digits_with_no_leading_zero_and_a_valid_check_digit(length: int) -> None:
    for _ in range(500):
        number = casenumbers.new_case_number(length)
        assert len(number) == length and number.isdigit() and number[0] != "0"
        assert casenumbers.is_valid(number, length=length)


def test_every_single_wrong_digit_is_caught() -> None:
    for number in sample_numbers(300):
        for position in range(len(number)):
            for digit in "0123456789":
                if digit == number[position]:
                    continue
                typo = number[:position] + digit + number[position + 1 :]
                assert casenumbers.damm_check_digit(typo) != "0", (number, typo)


def test_every_swap_of_two_neighbouring_digits_is_caught() -> None:
    for number in sample_numbers(300):
        for position in range(len(number) - 1):
            a, b = number[position], number[position + 1]
            if a == b:
                continue
            swapped = number[:position] + b + a + number[position + 2 :]
            assert casenumbers.damm_check_digit(swapped) != "0", (number, swapped)


def test_luhn_would_have_missed_the_09_90_swap_that_damm_catches() -> None:
    def luhn_valid(digits: str) -> bool:
        total = 0
        for index, char in enumerate(reversed(digits)):
            value = int(char) * (2 if index % 2 else 1)
            total += value - 9 if value > 9 else value
        return total % 10 == 0

    # Find a Luhn-valid number containing 09; swapping to 90 stays Luhn-valid, but Damm says no.
    payload = "1234509"
    for check in "0123456789":
        if luhn_valid(payload + check):
            luhn_number = payload + check
            break
    swapped = luhn_number.replace("09", "90")
    assert luhn_valid(swapped)
    damm_number = payload + casenumbers.damm_check_digit(payload)
    assert casenumbers.damm_check_digit(damm_number.replace("09", "90")) != "0"


def test_a_number_is_read_digit_by_digit_with_one_as_yao() -> None:
    assert casenumbers.spoken("10386") == "幺零三八六"
    assert casenumbers.spoken("11") == "幺幺"


def test_what_a_caller_types_is_cleaned_of_hash_and_star() -> None:
    assert casenumbers.clean_typed("1234*567#") == "1234567"


@pytest.mark.parametrize("bad", ["", "0123456", "1234567x", "１２３４５６７８", "123", "123456789"])
def test_malformed_numbers_are_not_valid(bad: str) -> None:
    assert not casenumbers.is_valid(bad)


def test_pins_are_digits_of_the_asked_length() -> None:
    assert all(len(pin) == 4 and pin.isdigit() for pin in (casenumbers.new_pin(4) for _ in range(200)))
