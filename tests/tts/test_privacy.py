"""The privacy guard: ID and card numbers never go on air, mobiles get a warning."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tts.privacy import (
    CheckResult,
    Finding,
    FindingKind,
    check,
    find_sensitive,
    luhn_valid,
    mask,
    resident_id_check_character,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TODAY = date(2026, 11, 25)

SAMPLE_ID = "150125195803121235"
CARD_16 = "6222021234567894"  # UnionPay prefix, Luhn check digit 4
CARD_19 = "6217000123456789019"


def iso7064_check(first17: str) -> str:
    """GB 11643's check character by the ISO 7064 MOD 11-2 formula, independent of the module's table."""
    total = sum(int(digit) * (2 ** (17 - index) % 11) for index, digit in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def luhn_by_hand(digits: str) -> bool:
    doubled = [int(d) * 2 - 9 if int(d) * 2 > 9 else int(d) * 2 for d in digits[-2::-2]]
    return (sum(doubled) + sum(int(d) for d in digits[::-2])) % 10 == 0


def find(text: str) -> list[Finding]:
    return find_sensitive(text, today=TODAY)


def village_notice_body() -> str:
    notices = json.loads((FIXTURES / "notices.json").read_text(encoding="utf-8"))
    (body,) = [notice["body"] for notice in notices if notice["kind"] == "disclosure_village"]
    assert isinstance(body, str)
    return body


# -- resident IDs ---------------------------------------------------------------


def test_the_id_in_the_sample_dibao_notice_is_found_where_it_is() -> None:
    body = village_notice_body()
    # 1*7 + 5*9 + 0*10 + 1*5 + 2*8 + 5*4 + 1*2 + 9*1 + 5*6 + 8*3 + 0*7 + 3*9 + 1*10 + 2*5 + 1*8 + 2*4 + 3*2
    # = 227; 227 mod 11 = 7; "10X98765432"[7] = "5", the ID's last digit: the checksum is right.
    assert iso7064_check(SAMPLE_ID[:17]) == SAMPLE_ID[17] == "5"

    (finding,) = find(body)

    assert finding.kind is FindingKind.RESIDENT_ID
    assert (finding.start, finding.end) == (71, 89)
    assert body[71:89] == SAMPLE_ID == finding.text
    assert finding.checksum_valid is True
    assert finding.blocking is True
    assert finding.message.startswith("第72个字符处疑似身份证号（校验位正确）")


def test_a_valid_id_is_reported_with_a_valid_checksum() -> None:
    text = "户主身份证号：152502198701010019，联系人张某"
    assert iso7064_check("15250219870101001") == "9"
    (finding,) = find(text)
    assert (finding.kind, finding.text, finding.checksum_valid) == (
        FindingKind.RESIDENT_ID,
        "152502198701010019",
        True,
    )
    assert (finding.start, finding.end) == (7, 25)


def test_an_id_with_a_wrong_check_digit_is_still_flagged_as_an_id() -> None:
    wrong = SAMPLE_ID[:17] + "6"
    (finding,) = find(f"身份证号{wrong}。")
    assert finding.kind is FindingKind.RESIDENT_ID
    assert finding.checksum_valid is False
    assert finding.blocking is True
    assert "校验位不符" in finding.message


@pytest.mark.parametrize("check_char", ["X", "x"])
def test_an_id_ending_in_x_is_found(check_char: str) -> None:
    assert iso7064_check("11010519491231002") == "X"
    (finding,) = find(f"身份证11010519491231002{check_char}号")
    assert finding.text == "11010519491231002" + check_char
    assert (finding.start, finding.end) == (3, 21)
    assert finding.checksum_valid is True


def test_a_15_digit_old_style_id_is_found_without_a_checksum_verdict() -> None:
    (finding,) = find("老身份证号150125580312123，已换领")
    assert finding.kind is FindingKind.RESIDENT_ID
    assert finding.text == "150125580312123"
    assert finding.checksum_valid is None
    assert finding.blocking is True
    assert "15位" in finding.message


@pytest.mark.parametrize(
    "grouped",
    ["150125 19580312 1235", "150125-19580312-1235", "150125 1958 0312 1235", "150125-1958-0312-1235"],
    ids=["spaces", "dashes", "groups-of-four-spaces", "groups-of-four-dashes"],
)
def test_an_id_written_in_groups_is_found(grouped: str) -> None:
    (finding,) = find(f"身份证号{grouped}")
    assert finding.kind is FindingKind.RESIDENT_ID
    assert finding.text == grouped
    assert finding.checksum_valid is True


def test_an_id_in_full_width_digits_is_found_and_reported_as_written() -> None:
    full_width = "".join(chr(ord(digit) + 0xFEE0) for digit in SAMPLE_ID)
    (finding,) = find(f"身份证号{full_width}")
    assert finding.text == full_width
    assert finding.checksum_valid is True


def test_an_impossible_birth_date_is_not_an_id() -> None:
    # 1958-02-30 does not exist.
    assert find("编号150125195802301235") == []


def test_a_future_birth_date_is_not_an_id() -> None:
    assert find("编号150125203001011234") == []


def test_a_birth_year_before_1900_is_not_an_id() -> None:
    assert find("编号150125189903121235") == []


@pytest.mark.parametrize("prefix", ["19", "00", "39", "72", "90"])
def test_a_number_without_a_province_code_is_not_an_id(prefix: str) -> None:
    number = prefix + SAMPLE_ID[2:]
    assert find(f"编号{number}") == []


@pytest.mark.parametrize(
    "text",
    ["11150125195803121235", "1501251958031212350", "流水号00150125195803121235001"],
    ids=["digits-before", "digit-after", "both-sides"],
)
def test_an_id_shaped_part_of_a_longer_digit_run_is_not_flagged(text: str) -> None:
    assert SAMPLE_ID in text
    assert find(text) == []


def test_the_check_character_function_agrees_with_iso_7064() -> None:
    for first17 in ["15012519580312123", "11010519491231002", "15250219870101001", "65010119991231999"]:
        assert resident_id_check_character(first17) == iso7064_check(first17)
    with pytest.raises(ValueError):
        resident_id_check_character("123")


# -- bank cards ------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [CARD_16, "6222 0212 3456 7894", "6222-0212-3456-7894", CARD_19, "6217 0001 2345 6789 019"],
    ids=["16-ungrouped", "16-spaces", "16-dashes", "19-ungrouped", "19-spaces"],
)
def test_a_luhn_valid_card_number_is_flagged(written: str) -> None:
    assert luhn_by_hand(written.replace(" ", "").replace("-", ""))
    text = f"补贴打入社保卡{written}，请查收"
    (finding,) = find(text)
    assert finding.kind is FindingKind.BANK_CARD
    assert finding.text == written
    assert (finding.start, finding.end) == (7, 7 + len(written))
    assert finding.blocking is True
    assert "银行卡号" in finding.message


def test_a_luhn_invalid_16_digit_number_is_not_a_card() -> None:
    number = "6222021234567890"
    assert not luhn_by_hand(number)
    assert find(f"卡号{number}") == []


def test_a_luhn_valid_number_with_an_implausible_prefix_is_not_a_card() -> None:
    number = "1234567812345670"
    assert luhn_by_hand(number)
    assert find(f"编号{number}") == []


def test_an_id_that_also_passes_luhn_is_reported_once_as_an_id() -> None:
    # An 18-digit ID starting 62 (no such province) cannot be an ID; one starting
    # 65 (Xinjiang) is both a plausible ID and, with the right last digit, Luhn-valid.
    first17 = "65010119900101123"
    (number,) = [first17 + digit for digit in "0123456789" if luhn_by_hand(first17 + digit)]
    (finding,) = find(f"号码{number}")
    assert finding.kind is FindingKind.RESIDENT_ID


def test_luhn_valid_matches_the_hand_computation() -> None:
    for number in [CARD_16, CARD_19, "4111111111111111", "6222021234567890", "79927398713"]:
        assert luhn_valid(number) is luhn_by_hand(number)


# -- mobile and service numbers -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("代办电话13800001111（工作日）", "13800001111"),
        ("联系人：张某 138 0000 1111", "138 0000 1111"),
        ("手机+86 13947112345", "13947112345"),
        ("手机8613947112345", "13947112345"),
    ],
    ids=["plain", "grouped", "country-code-spaced", "country-code"],
)
def test_a_private_mobile_number_is_a_warning_not_a_blocker(text: str, number: str) -> None:
    (finding,) = find(text)
    assert finding.kind is FindingKind.MOBILE_PHONE
    assert finding.text == number
    assert text[finding.start : finding.end] == number
    assert finding.blocking is False
    assert finding.checksum_valid is None


@pytest.mark.parametrize(
    "text",
    [
        "发现火情请立即拨打森林草原防火报警电话12119。",
        "政务服务热线12345",
        "监督电话0471-1234567",
        "报警110，火警119，急救120",
        "客服95598",
        "2026年11月25日至12月1日，共7天",
        "12.5万元，9,876.50元",
    ],
    ids=["12119", "12345", "landline", "emergency", "95598", "dates", "amounts"],
)
def test_service_numbers_dates_and_amounts_are_never_findings(text: str) -> None:
    assert find(text) == []


def test_a_mobile_number_inside_a_longer_run_is_not_flagged() -> None:
    assert find("订单号213800001111") == []
    assert find("订单号138000011112") == []


# -- masking and the summary --------------------------------------------------------


def test_masking_the_sample_notice_hides_the_middle_of_the_id() -> None:
    body = village_notice_body()
    masked = mask(body, today=TODAY)
    assert "身份证号150125********1235；" in masked
    assert SAMPLE_ID not in masked
    assert len(masked) == len(body)
    assert masked.replace("150125********1235", SAMPLE_ID) == body


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (SAMPLE_ID, "150125********1235"),
        ("11010519491231002X", "110105********002X"),
        ("150125580312123", "150125*****2123"),
        ("150125 19580312 1235", "150125 ******** 1235"),
        (CARD_16, "6222********7894"),
        ("6222 0212 3456 7894", "6222 **** **** 7894"),
        (CARD_19, "6217***********9019"),
        ("13800001111", "138****1111"),
        ("138-0000-1111", "138-****-1111"),
        ("热线12345，手机13800001111", "热线12345，手机138****1111"),
    ],
    ids=["id", "id-x", "id-15", "id-grouped", "card", "card-grouped", "card-19", "mobile", "mobile-grouped", "mixed"],
)
def test_mask_keeps_the_ends_and_the_separators(text: str, masked: str) -> None:
    assert mask(text, today=TODAY) == masked


def test_check_summarises_a_notice_with_an_id_a_card_and_a_phone() -> None:
    text = f"李某某，身份证号{SAMPLE_ID}，补贴卡号{CARD_16}，联系电话13800001111。"
    result = check(text, today=TODAY)
    assert isinstance(result, CheckResult)
    assert [finding.kind for finding in result.findings] == [
        FindingKind.RESIDENT_ID,
        FindingKind.BANK_CARD,
        FindingKind.MOBILE_PHONE,
    ]
    assert result.blocking is True
    assert [finding.kind for finding in result.warnings] == [FindingKind.MOBILE_PHONE]
    assert result.masked_text == "李某某，身份证号150125********1235，补贴卡号6222********7894，联系电话138****1111。"
    assert check(result.masked_text, today=TODAY).findings == ()


def test_a_notice_with_only_a_mobile_number_does_not_block() -> None:
    result = check("代办电话13800001111", today=TODAY)
    assert len(result.findings) == 1
    assert result.blocking is False
    assert result.masked_text == "代办电话138****1111"


def test_a_clean_notice_passes_unchanged() -> None:
    text = "紧急通知！请拨打12119。"
    result = check(text, today=TODAY)
    assert result == CheckResult(findings=(), blocking=False, masked_text=text)


def test_findings_are_immutable() -> None:
    (finding,) = find(SAMPLE_ID)
    with pytest.raises(AttributeError):
        finding.start = 0  # type: ignore[misc]


def test_today_defaults_to_the_system_date() -> None:
    (finding,) = find_sensitive(SAMPLE_ID)
    assert finding.kind is FindingKind.RESIDENT_ID
