"""Plain notice text in, speakable Mandarin out.

Our engines take no SSML (edge-tts only takes rate/volume/pitch; espeak-ng's
``cmn-latn-pinyin`` voice reads whatever characters it is given), so everything
an announcer would do with a number has to be done here, in the text:
``9,876.50元`` becomes ``九千八百七十六元五角``, ``0471-1234567`` becomes
``零四七幺，幺二三四五六七``, ``8:30-17:30`` becomes ``八点三十分到十七点三十分``.

Public API:

* :func:`normalize` validates the text and returns its spoken form;
* :func:`split_sentences` cuts a (normalised) text into engine-sized chunks;
* :func:`read_integer`, :func:`read_decimal`, :func:`read_digits`: the number
  core the rules are built on, usable on their own (case numbers, read-backs).

The rewriting is an ordered list of compiled regex rules (``_RULES``); the order
is explained next to that list. Every rule that reads a number emits Chinese
characters only, so a later rule can never read the same digits twice.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from tts.errors import TextError

__all__ = [
    "normalize",
    "read_decimal",
    "read_digits",
    "read_integer",
    "split_sentences",
]

# --------------------------------------------------------------------------
# The number core
# --------------------------------------------------------------------------

_DIGIT_WORDS: Final = "零一二三四五六七八九"
# Over a loudspeaker or a phone line 一 (yī) is easily heard as 七 (qī); when a
# string of digits is read one by one (phone numbers, codes) Chinese speakers
# say 幺 (yāo) instead, as every dispatcher and 12345 operator does.
_PHONE_DIGIT_WORDS: Final = "零幺二三四五六七八九"
_SMALL_UNITS: Final = ("", "十", "百", "千")
_WAN: Final = 10**4
_YI: Final = 10**8


def read_digits(digits: str, *, one_as_yao: bool = False) -> str:
    """Read ASCII digits one by one: ``"2026"`` -> ``二零二六``.

    ``one_as_yao`` reads 1 as 幺, for phone numbers and codes (not for years).
    """
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"expected ASCII digits, got {digits!r}")
    words = _PHONE_DIGIT_WORDS if one_as_yao else _DIGIT_WORDS
    return "".join(words[int(digit)] for digit in digits)


def _read_group(value: int) -> str:
    """0 < value < 10000, e.g. 1005 -> 一千零五; inner runs of zeros say 零 once."""
    parts: list[str] = []
    pending_zero = False
    for position in (3, 2, 1, 0):
        digit = value // 10**position % 10
        if digit == 0:
            pending_zero = bool(parts)
            continue
        if pending_zero:
            parts.append("零")
            pending_zero = False
        parts.append(_DIGIT_WORDS[digit] + _SMALL_UNITS[position])
    return "".join(parts)


def _read_below_yi(value: int) -> str:
    """0 < value < 10**8: a 万 group and a units group."""
    high, low = divmod(value, _WAN)
    text = _read_group(high) + "万" if high else ""
    if low:
        if high and low < 1000:
            text += "零"  # 10,010 is 一万零一十: the gap is said
        text += _read_group(low)
    return text


def _read_positive(value: int) -> str:
    if value < _YI:
        return _read_below_yi(value)
    high, low = divmod(value, _YI)
    text = _read_positive(high) + "亿"
    if low:
        if low < 10**7:
            text += "零"
        text += _read_below_yi(low)
    return text


def read_integer(value: int) -> str:
    """Read an integer the way it is said: 12345 -> 一万二千三百四十五.

    A leading 一十 is said 十 (10 -> 十, 100010 -> 十万零一十), and a leading 2
    before 千/万/亿 is said 两 (2000 -> 两千, 20000 -> 两万); 二百 and 二十 stay.
    """
    if value < 0:
        return "负" + read_integer(-value)
    if value == 0:
        return "零"
    text = _read_positive(value)
    if text.startswith("一十"):
        text = text[1:]
    if text[:2] in ("二千", "二万", "二亿"):
        text = "两" + text[1:]
    return text


_DECIMAL_SHAPE: Final = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", re.ASCII)


def read_decimal(number: str) -> str:
    """Read a decimal as written: ``"12.5"`` -> 十二点五, ``"0.05"`` -> 零点零五.

    Thousands separators are allowed (``"1,376.5"``); the fraction is read digit
    by digit, trailing zeros included, because that is what was written.
    """
    if not _DECIMAL_SHAPE.fullmatch(number):
        raise ValueError(f"not a decimal number: {number!r}")
    sign = ""
    if number.startswith("-"):
        sign, number = "负", number[1:]
    whole, _, fraction = number.replace(",", "").partition(".")
    text = sign + read_integer(int(whole))
    if fraction:
        text += "点" + read_digits(fraction)
    return text


# --------------------------------------------------------------------------
# Vocabulary the rules share
# --------------------------------------------------------------------------

# Words that make a preceding number a quantity (so 12345人 is a count of people,
# not the 12345 hotline, and 500元-800元 is a range, not minus 800).
_QUANTITY_WORDS: Final = (
    "人(?!工)", "户", "口", "名", "位", "个", "家", "所", "座", "栋", "间", "套", "处",
    "条", "项", "件", "台", "辆", "头", "只", "匹", "张", "本", "册", "份", "块", "根",
    "棵", "株", "箱", "袋", "包", "瓶", "桶", "车", "船", "架", "部", "笔", "例", "起",
    "宗", "遍", "场", "趟", "轮", "批", "种", "类", "次", "倍", "成", "层", "楼", "级",
    "届", "期", "组", "班", "号", "亩", "公顷", "公里", "千米", "米", "里", "公斤", "斤",
    "吨", "千克", "克", "毫升", "升", "厘米", "毫米", "平方", "立方", "千瓦", "千伏", "度",
    "元", "角", "毛", "分", "万", "亿", "千", "百", "多", "余", "年", "月", "日", "天",
    "周", "小时", "时", "秒", "岁", "摄氏度",
)  # fmt: skip

# Measure words before which a lone 2 is said 两 (两人, 两户, 两公里, 两天). Not
# 号/月/日/组/级/楼/期/届: 2号, 2月, 2组 and 2级 are names of things and stay 二.
_LIANG_WORDS: Final = (
    "个", "人(?!工)", "户", "口", "位", "名", "家", "所", "座", "栋", "间", "套", "处",
    "条", "项", "件", "台", "辆", "头", "只", "匹", "张", "本", "份", "块", "根", "棵",
    "株", "箱", "袋", "包", "瓶", "桶", "部", "笔", "遍", "场", "趟", "轮", "批", "种",
    "类", "次", "倍", "层", "亩", "公顷", "公里", "千米", "米", "公斤", "斤", "吨", "千克",
    "克", "升", "平方", "立方", "度", "元", "万", "千", "亿", "年(?!级)", "天", "周",
    "小时", "分钟", "秒", "岁", "点",
)  # fmt: skip


def _alternation(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_QUANTITY_AHEAD: Final = re.compile(r" ?" + _alternation(_QUANTITY_WORDS))
_LIANG_AHEAD: Final = re.compile(r" ?" + _alternation(_LIANG_WORDS))

# Service numbers read digit by digit even without 电话 before them. Kept short
# and explicit: a number on this list is never a quantity unless a measure word
# follows it (12345人). The three-digit emergency numbers are common quantities
# too (共120户), so they need a phone word before or after them.
_SERVICE_NUMBERS: Final = frozenset(
    {
        "12345",  # 政务服务便民热线
        "12119",  # 森林草原防火
        "12315",  # 市场监管投诉
        "12110",  # 公安短信报警
        "12333",  # 人社
        "12348",  # 法律援助
        "12388",  # 纪检监察举报
        "12316",  # 农业农村
        "12320",  # 卫生健康
        "12355",  # 青少年
        "12338",  # 妇女维权
        "12369",  # 生态环境
        "12366",  # 税务
        "96110",  # 反诈预警
    }
)
_EMERGENCY_NUMBERS: Final = frozenset({"110", "119", "120", "122"})
_CUSTOMER_SERVICE: Final = re.compile(r"95\d{3}", re.ASCII)  # 95598 国家电网, 95588 …
_PHONE_WORD_BEFORE: Final = re.compile(
    r"(?:(?:电话|热线|拨打|号码|致电|联系|手机|座机|传真|来电|报警|求助|呼叫|值班室|尾号|后[四六八0-9]位)"
    r"[^0-9。！？；，,\n]{0,4}|拨[：: ]?)$"
)
# 请拨110或119: a number listed right after a service number is one too.
_LISTED_AFTER: Final = re.compile(r"(\d{3,5}) ?[或、和及/] ?$", re.ASCII)
_PHONE_WORD_AFTER: Final = re.compile(r" ?(?:报警|急救|火警|求助|求救|热线|电话|服务|平台|指挥|救援|举报|投诉|交通)")

_NUMERAL_CHARS: Final = "〇零一二三四五六七八九十百千万亿两幺点"
_HAN: Final = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK: Final = _HAN + "\u3000-\u303f\uff00-\uffef"


# --------------------------------------------------------------------------
# Reading helpers used by the rules
# --------------------------------------------------------------------------


def _read_quantity(token: str, rest: str = "") -> str:
    """Read a number token as a quantity; ``rest`` is the text right after it."""
    if "." in token:
        return read_decimal(token)
    value = int(token.replace(",", ""))
    if value == 2 and _LIANG_AHEAD.match(rest):
        return "两"
    return read_integer(value)


def _read_signed(token: str, rest: str = "") -> str:
    if token.startswith("负"):
        return "负" + _read_quantity(token[1:], rest)
    return _read_quantity(token, rest)


def _looks_like_code(digits: str, rest: str) -> bool:
    """Digit strings that are identifiers, not amounts: read them digit by digit."""
    if len(digits) > 1 and digits.startswith("0"):
        return True
    if len(digits) > 16:
        return True
    # Beyond 亿 a bare digit run is an account, ID or serial number, unless a
    # unit says it is an amount (123456789元) or it is round (100000000 is 一亿).
    if len(digits) <= 8 or int(digits) % _WAN == 0:
        return False
    return not _QUANTITY_AHEAD.match(rest)


def _join_word(joiner: str) -> str:
    """至 and 到 are kept as written; dashes and tildes between numbers say 到."""
    return joiner if joiner in ("至", "到") else "到"


def _rest(match: re.Match[str]) -> str:
    return match.string[match.end() :]


# --------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------

Replacement = Callable[[re.Match[str]], str]


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    pattern: re.Pattern[str]
    replace: Replacement

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replace, text)


def _rule(name: str, pattern: str) -> Callable[[Replacement], _Rule]:
    """Decorator: compile ``pattern`` (ASCII ``\\d``: other scripts' digits are left alone)."""

    def build(replace: Replacement) -> _Rule:
        return _Rule(name, re.compile(pattern, re.ASCII), replace)

    return build


_NUM: Final = r"(?:\d{1,3}(?:,\d{3})+(?![0-9])|\d+)(?:\.\d+)?"
_JOIN: Final = r"[\-~—–至到]"
_NOT_AFTER_NUMBER: Final = r"(?<![0-9.,])"
_NOT_BEFORE_NUMBER: Final = r"(?![0-9]|\.[0-9]|,[0-9]{3})"

_UNIT_ABBREVIATIONS: Final = {
    "km/h": "公里每小时",
    "km²": "平方公里",
    "km2": "平方公里",
    "kWh": "千瓦时",
    "kwh": "千瓦时",
    "KWh": "千瓦时",
    "KWH": "千瓦时",
    "kW": "千瓦",
    "kw": "千瓦",
    "KW": "千瓦",
    "kV": "千伏",
    "V": "伏",
    "kv": "千伏",
    "kg": "公斤",
    "KG": "公斤",
    "Kg": "公斤",
    "km": "公里",
    "KM": "公里",
    "Km": "公里",
    "mm": "毫米",
    "cm": "厘米",
    "m²": "平方米",
    "m2": "平方米",
    "m³": "立方米",
    "m3": "立方米",
    "mg": "毫克",
    "ml": "毫升",
    "mL": "毫升",
    "min": "分钟",
    "ha": "公顷",
    "t": "吨",
    "h": "小时",
    "m": "米",
    "g": "克",
}
_UNIT_SYMBOLS: Final = {
    "㎞": "公里",
    "㎏": "公斤",
    "㎡": "平方米",
    "㎥": "立方米",
    "㎜": "毫米",
    "㎝": "厘米",
    "㏊": "公顷",
}


@_rule(
    "unit abbreviations after numbers",
    r"(?<=\d) ?("
    + "|".join(re.escape(unit) for unit in sorted(_UNIT_ABBREVIATIONS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])",
)
def _unit_abbreviation(match: re.Match[str]) -> str:
    return _UNIT_ABBREVIATIONS[match[1]]


@_rule("unit symbols", "[" + "".join(_UNIT_SYMBOLS) + "]")
def _unit_symbol(match: re.Match[str]) -> str:
    return _UNIT_SYMBOLS[match[0]]


# Roman numerals name response and warning levels (启动Ⅲ级应急响应, IV级). espeak-ng reads the
# Unicode ones as code-point noise and spells the Latin ones out letter by letter.
_ROMAN_CHARS: Final = {chr(0x2160 + index): index + 1 for index in range(12)} | {
    chr(0x2170 + index): index + 1 for index in range(12)
}
_ROMAN_LATIN: Final = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "X": 10}


@_rule(
    "roman numerals",
    "(["
    + "".join(_ROMAN_CHARS)
    + "])|(?<![A-Za-z])("
    + "|".join(sorted(_ROMAN_LATIN, key=len, reverse=True))
    + ")(?= ?[级类])",
)
def _roman(match: re.Match[str]) -> str:
    return read_integer(_ROMAN_CHARS[match[1]] if match[1] else _ROMAN_LATIN[match[2]])


# ①-⑳, ⑴-⒇ and ⒈-⒛ number the points of a notice; espeak-ng says nothing at all for them.
_CIRCLED: Final = (
    {chr(0x2460 + index): index + 1 for index in range(20)}
    | {chr(0x2474 + index): index + 1 for index in range(20)}
    | {chr(0x2488 + index): index + 1 for index in range(20)}
)


@_rule("circled numbers", "[" + "".join(_CIRCLED) + "]")
def _circled(match: re.Match[str]) -> str:
    return read_integer(_CIRCLED[match[0]]) + "、"


# A number with its middle hidden (150125********1235, 138****1111, 6222 **** **** 1234):
# stars (or a run of x, as some clerks type it) between or beside digits. Read aloud, the
# digits left visible are no use to a listener in a yard (nobody writes down a region code
# and four digits from a loudspeaker) and sound like a whole number being read out; so the
# listener hears that the number was hidden on purpose, and none of its digits.
_MASK_RUN: Final = r"(?:[*＊●]{2,}|[xX×]{4,})"
_MASKED_BEFORE_NAMED: Final = re.compile(r"(?:号码|号|方式)[ :：]*$")
_MASKED_BEFORE_NOUN: Final = re.compile(r"(?:身份证|手机|电话|座机|银行卡|社保卡|卡|账户|帐户|证件)[ :：]*$")
_MASKED_MIN_POSITIONS: Final = 6  # 5**2 is arithmetic; a hidden number has at least 138****…


@_rule(
    "masked numbers",
    r"(?<![0-9A-Za-z])(\d+[ \-]?)?(" + _MASK_RUN + r"(?:[ \-]?" + _MASK_RUN + r")*)([ \-]?\d+[Xx]?)?(?![0-9A-Za-z])",
)
def _masked_number(match: re.Match[str]) -> str:
    head, hidden, tail = match[1] or "", match[2], match[3] or ""
    digits = sum(char.isdigit() for char in head + tail)
    stars = sum(char not in " -" for char in hidden)
    # Markdown bold pasted from a chat (**2026**年, 请拨打**12345**) is not a mask: a mask hides
    # at least three digits between two visible ends, or four before or after one.
    enough_stars = stars >= (3 if head and tail else 4)
    if not digits or not enough_stars or digits + stars < _MASKED_MIN_POSITIONS:
        return match[0]  # markup or 5**2, not a hidden number
    before = match.string[: match.start()]
    if _MASKED_BEFORE_NAMED.search(before):
        return "已隐去"  # 身份证号：已隐去
    if _MASKED_BEFORE_NOUN.search(before) or not before.rstrip(" ") or not _is_han(before.rstrip(" ")[-1]):
        return "号码已隐去"  # 手机号码已隐去; at the start of a line or after punctuation
    return "，号码已隐去"  # 李某某，号码已隐去


def _is_han(char: str) -> bool:
    return re.match(f"[{_HAN}]", char) is not None


@_rule("multiplication signs between numbers", r"(?<=[0-9]) ?[*xX×] ?(?=[0-9])")
def _times(match: re.Match[str]) -> str:
    return "乘"  # 3*4米, 5x6米: dimensions (a run of stars or x was a mask, taken above)


@_rule(
    "landline numbers",
    r"(?<![0-9])(?:[(（](0\d{2,3})[)）] ?|(0\d{2,3}) ?[\-—–] ?|(0\d{2,3}) |(0(?:10|2\d)|0[3-9]\d\d))"
    r"(\d{7,8})(?: ?(?:-|转) ?(\d{1,5}))?(?![0-9])",
)
def _landline(match: re.Match[str]) -> str:
    area = match[1] or match[2] or match[3] or match[4]
    spoken = read_digits(area, one_as_yao=True) + "，" + read_digits(match[5], one_as_yao=True)
    if match[6]:
        spoken += "转" + read_digits(match[6], one_as_yao=True)
    return spoken


@_rule("400 and 800 numbers", r"(?<![0-9])([48]00)([ \-]?)(\d{3})\2(\d{4})(?![0-9])")
def _toll_free(match: re.Match[str]) -> str:
    return "，".join(read_digits(match[i], one_as_yao=True) for i in (1, 3, 4))


@_rule("mobile numbers", r"(?<![0-9])(?:\+86[ \-]?)?(1[3-9]\d)([ \-]?)(\d{4})\2(\d{4})(?![0-9])")
def _mobile(match: re.Match[str]) -> str:
    groups = [read_digits(match[i], one_as_yao=True) for i in (1, 3, 4)]
    # Written grouped (138 0000 1111), it is read with the same pauses.
    return ("，" if match[2] else "").join(groups)


@_rule("serial numbers", r"(?<![0-9.,])(\d+)[\-—–](0\d+)(?![0-9]|\.[0-9])")
def _serial_number(match: re.Match[str]) -> str:
    # 公告编号：2026-001: a leading zero after the dash makes it a code, not 2026 to 1.
    return read_digits(match[1], one_as_yao=True) + "，" + read_digits(match[2], one_as_yao=True)


def _valid_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _read_year(digits: str) -> str:
    return read_digits(digits) + "年"


@_rule("numeric dates", r"(?<![0-9.])(\d{4})([\-/.])(\d{1,2})\2(\d{1,2})(?![0-9]|\.[0-9])")
def _numeric_date(match: re.Match[str]) -> str:
    month, day = int(match[3]), int(match[4])
    if not _valid_date(month, day):
        return match[0]
    return f"{_read_year(match[1])}{read_integer(month)}月{read_integer(day)}日"


@_rule(
    "numeric year-months",
    r"(?<![0-9.])((?:19|20)\d\d)([\-/.])(\d{1,2})(?![0-9]|[\-/.][0-9])",
)
def _numeric_year_month(match: re.Match[str]) -> str:
    month = int(match[3])
    if not 1 <= month <= 12 or _QUANTITY_AHEAD.match(_rest(match)):
        return match[0]
    return f"{_read_year(match[1])}{read_integer(month)}月"


@_rule(
    "dotted month-day ranges",
    r"(?<![0-9.])(1[0-2]|[1-9])\.(\d{1,2}) ?([\-~—–至到]) ?(1[0-2]|[1-9])\.(\d{1,2})(?![0-9]|\.[0-9])",
)
def _dotted_day_range(match: re.Match[str]) -> str:
    # 报名时间11.25-11.30, 12.1-12.31, 10.1-10.7: written that way these are days, not decimals.
    # A unit or a percent sign after them (1.5-2.5米, 11.25-11.30元) makes them numbers again;
    # so does a range that is neither written with a two-digit day nor within one month
    # (6.5-8.5 is more likely a measurement).
    month1, day1, joiner, month2, day2 = match.groups()
    rest = _rest(match)
    looks_like_days = max(len(day1), len(day2)) == 2 or (month1 == month2 and int(day1) < int(day2))
    if (
        _QUANTITY_AHEAD.match(rest)
        or rest.lstrip(" ")[:1] in ("%", "‰", "℃", "°")
        or not looks_like_days
        or not (_valid_date(int(month1), int(day1)) and _valid_date(int(month2), int(day2)))
    ):
        return match[0]
    return (
        f"{read_integer(int(month1))}月{read_integer(int(day1))}日"
        f"{_join_word(joiner)}{read_integer(int(month2))}月{read_integer(int(day2))}日"
    )


@_rule("year ranges", r"(?<![0-9.,])(\d{4}) ?(" + _JOIN + r") ?(\d{4})(?![0-9])")
def _year_range(match: re.Match[str]) -> str:
    rest = _rest(match)
    both_plausible = all(1900 <= int(match[i]) <= 2099 for i in (1, 3))
    if not (rest.lstrip(" ").startswith("年") or (both_plausible and not _QUANTITY_AHEAD.match(rest))):
        return match[0]
    return read_digits(match[1]) + _join_word(match[2]) + read_digits(match[3])


@_rule("years", r"(?<![0-9.,])(\d{4})(?= ?年)")
def _year(match: re.Match[str]) -> str:
    return read_digits(match[1])


@_rule("document-number years", r"[〔\[［]((?:19|20)\d\d)[〕\]］]")
def _document_year(match: re.Match[str]) -> str:
    # 内政发〔2026〕12号: the bracketed year of a document number.
    return "〔" + read_digits(match[1]) + "〕"


def _read_clock(hour: str, minute: str, second: str | None) -> str | None:
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > 24 or m > 59 or s > 59:
        return None
    spoken = ("两" if h == 2 else read_integer(h)) + "点"
    if m or s:
        spoken += ("零" if m < 10 else "") + read_integer(m) + "分"
    if s:
        spoken += ("零" if s < 10 else "") + read_integer(s) + "秒"
    return spoken


_CLOCK: Final = r"(\d{1,2})[:：](\d\d)(?:[:：](\d\d))?"


@_rule(
    "clock times",
    # Not right after digits and a colon (the middle of 12:30:45:00), but after a label's colon
    # it is a time: 开会时间：9:30.
    r"(?<![0-9.])(?<![0-9][:：])" + _CLOCK + r"(?: ?(" + _JOIN + r") ?" + _CLOCK + r")?(?![0-9:：])",
)
def _clock(match: re.Match[str]) -> str:
    start = _read_clock(match[1], match[2], match[3])
    if start is None:
        return match[0]
    if match[4] is None:
        return start
    end = _read_clock(match[5], match[6], match[7])
    if end is None:
        return match[0]
    return start + _join_word(match[4]) + end


_SIGN: Final = r"(?:零下|零上|-|\+)"
_TEMPERATURE_UNIT: Final = r"(℃|°C|°c|℉|°F)"


def _read_temperature_value(sign: str | None, number: str) -> str:
    above = {None: "", "零上": "零上", "+": "零上"}
    return above.get(sign, "零下") + _read_quantity(number)


def _temperature_unit(symbol: str | None) -> str:
    if symbol is None:
        return ""
    return "华氏度" if symbol in ("℉", "°F") else "摄氏度"


@_rule(
    "temperatures",
    r"(?<![0-9.])(" + _SIGN + r")? ?(" + _NUM + r") ?" + _TEMPERATURE_UNIT + r"?"
    r"(?: ?(" + _JOIN + r") ?(" + _SIGN + r")? ?(" + _NUM + r"))? ?" + _TEMPERATURE_UNIT,
)
def _temperature(match: re.Match[str]) -> str:
    sign1, number1, unit1, joiner, sign2, number2, unit2 = match.groups()
    if joiner is None:
        if unit1 is not None:  # "5℃℃": not ours
            return match[0]
        return _read_temperature_value(sign1, number1) + _temperature_unit(unit2)
    return (
        _read_temperature_value(sign1, number1)
        + _temperature_unit(unit1)
        + _join_word(joiner)
        + _read_temperature_value(sign2, number2)
        + _temperature_unit(unit2)
    )


def _read_percent(sign: str | None, number: str, symbol: str) -> str:
    base = "百分之" if symbol == "%" else "千分之"
    return ("负" if sign else "") + base + _read_quantity(number)


@_rule(
    "percentages",
    r"(?<![0-9.])(-)?(" + _NUM + r") ?([%‰])?"
    r"(?: ?(" + _JOIN + r") ?(-)?(" + _NUM + r"))? ?([%‰])",
)
def _percentage(match: re.Match[str]) -> str:
    sign1, number1, symbol1, joiner, sign2, number2, symbol2 = match.groups()
    if joiner is None:
        if symbol1 is not None:
            return match[0]
        return _read_percent(sign1, number1, symbol2)
    # 10-20% is said 百分之十到百分之二十: the sign belongs to both ends.
    return (
        _read_percent(sign1, number1, symbol1 or symbol2) + _join_word(joiner) + _read_percent(sign2, number2, symbol2)
    )


@_rule("ordinals", r"第 ?(\d+)(?: ?(" + _JOIN + r") ?(\d+))?")
def _ordinal(match: re.Match[str]) -> str:
    # 第2 is 第二, never 两: read_integer is used directly, not _read_quantity.
    spoken = "第" + read_integer(int(match[1]))
    if match[2]:
        spoken += _join_word(match[2]) + read_integer(int(match[3]))
    return spoken


@_rule("phone-context numbers", r"(?<![0-9.,第¥￥])(\d{3,12})" + _NOT_BEFORE_NUMBER)
def _phone_context_number(match: re.Match[str]) -> str:
    digits, rest = match[1], _rest(match)
    if _QUANTITY_AHEAD.match(rest):
        return match[0]
    before = match.string[max(0, match.start() - 16) : match.start()]
    if (
        _is_service_number(digits)
        or _PHONE_WORD_BEFORE.search(before)
        or (digits in _EMERGENCY_NUMBERS and _PHONE_WORD_AFTER.match(rest))
        or _follows_listed_service_number(before)
        or (len(digits) in (7, 8) and _AFTER_A_PHONE_NUMBER.search(_sentence_before(match)) is not None)
        or _EXTENSION_AFTER_PHONE_NUMBER.search(before) is not None
    ):
        return read_digits(digits, one_as_yao=True)
    return match[0]


# 联系电话：6231234、6231235: a local number listed right after another phone number (its
# digits, or their reading if an earlier rule took it) in a sentence about phoning is one too.
_AFTER_A_PHONE_NUMBER: Final = re.compile(
    r"(?:电话|热线|手机|座机|传真|拨打|联系)[^。！？；\n]*"
    r"(?:[零幺二三四五六七八九]{7,}|(?<![0-9])[0-9]{7,8})(?:转[零幺二三四五六七八九0-9]+)? ?[、，/或和及] ?$"
)


# ……6231235转8001: the extension after a local number.
_EXTENSION_AFTER_PHONE_NUMBER: Final = re.compile(r"(?:[零幺二三四五六七八九]{7,}|(?<![0-9])[0-9]{7,8}) ?转 ?$")


def _sentence_before(match: re.Match[str]) -> str:
    before = match.string[: match.start()]
    return before[max(before.rfind(mark) for mark in "。！？；\n") + 1 :]


def _is_service_number(digits: str) -> bool:
    return digits in _SERVICE_NUMBERS or bool(_CUSTOMER_SERVICE.fullmatch(digits))


def _follows_listed_service_number(before: str) -> bool:
    listed = _LISTED_AFTER.search(before)
    return listed is not None and (_is_service_number(listed[1]) or listed[1] in _EMERGENCY_NUMBERS)


@_rule(
    "dashes after a unit",
    r"(?<=[0-9])( ?" + _alternation(_QUANTITY_WORDS) + r" ?)[\-~—–] ?(?=-?[0-9])",
)
def _dash_after_unit(match: re.Match[str]) -> str:
    # 500元-800元, 9月1日-12月31日: a range, not "minus 800".
    return match[1] + "到"


@_rule("minus signs", r"-(?=" + _NUM + ")")
def _minus(match: re.Match[str]) -> str:
    before = match.string[: match.start()].rstrip(" ")
    if before and ((before[-1].isascii() and before[-1].isalnum()) or before[-1] in ")）]%‰."):
        return match[0]  # a hyphen or a range dash, handled by later rules
    return "负"


@_rule(
    "number ranges",
    r"(?<![0-9.])(负?" + _NUM + r") ?([\-~—–]) ?(负?" + _NUM + ")" + _NOT_BEFORE_NUMBER,
)
def _number_range(match: re.Match[str]) -> str:
    rest = _rest(match)
    return _read_signed(match[1], match[2]) + "到" + _read_signed(match[3], rest)


def _read_yuan(amount: str) -> str:
    """Money in 元/角/分: 9876.50 -> 九千八百七十六元五角, 3.07 -> 三元零七分."""
    whole, _, fraction = amount.replace(",", "").partition(".")
    if len(fraction) > 2:
        return read_decimal(amount) + "元"  # not a money shape; say what is written
    yuan = int(whole)
    jiao, fen = (int(d) for d in fraction.ljust(2, "0"))
    if not (jiao or fen):
        return ("两" if yuan == 2 else read_integer(yuan)) + "元"
    spoken = ""
    if yuan:
        spoken = ("两" if yuan == 2 else read_integer(yuan)) + "元"
    if jiao:
        spoken += _DIGIT_WORDS[jiao] + "角"
    if fen:
        spoken += ("零" if yuan and not jiao else "") + _DIGIT_WORDS[fen] + "分"
    return spoken


@_rule(
    "money with a currency prefix",
    r"(人民币|RMB|¥|￥) ?(" + _NUM + r")(?: ?(万亿|万|亿))?(?: ?元)?",
)
def _prefixed_money(match: re.Match[str]) -> str:
    prefix = "人民币" if match[1] in ("人民币", "RMB") else ""
    if match[3]:
        return prefix + _read_quantity(match[2]) + match[3] + "元"
    return prefix + _read_yuan(match[2])


@_rule("money in yuan", _NOT_AFTER_NUMBER + r"(" + _NUM + r") ?元")
def _money(match: re.Match[str]) -> str:
    return _read_yuan(match[1])


@_rule("fractions", r"(?<![0-9/.])(\d+)/(\d+)(?![0-9/])")
def _fraction(match: re.Match[str]) -> str:
    # Slashes inside dates were taken by the date rules; what is left is a/b.
    return read_integer(int(match[2])) + "分之" + read_integer(int(match[1]))


@_rule("dotted sequences", r"(?<![0-9.])\d+(?:\.\d+){2,}(?![0-9])")
def _dotted(match: re.Match[str]) -> str:
    # Section and version numbers (3.2.1, 10.5.1): each part, 点 between.
    return "点".join(_read_quantity(part) for part in match[0].split("."))


@_rule("ratios", r"(?<![0-9.])(\d+)[:：](\d+)(?![0-9])")
def _ratio(match: re.Match[str]) -> str:
    # Clock times were taken earlier; what is left (3:2, 1:10000) is a ratio.
    return read_integer(int(match[1])) + "比" + read_integer(int(match[2]))


@_rule("codes after Latin letters", r"(?<=[A-Za-z])(-?)(\d+)(?![0-9.])")
def _latin_code(match: re.Match[str]) -> str:
    # G110 国道, K1234 次列车: letters and digits together name a thing.
    return (" " if match[1] else "") + read_digits(match[2], one_as_yao=True)


@_rule("list markers", r"(?m)^ ?(\d{1,2})\.(?![0-9])")
def _list_marker(match: re.Match[str]) -> str:
    return read_integer(int(match[1])) + "、"  # "1.村民大会" is item 一, not a sentence end


@_rule("plain numbers", r"(" + _NUM + ")")
def _plain_number(match: re.Match[str]) -> str:
    token, rest = match[1], _rest(match)
    if token.isdigit() and _looks_like_code(token, rest):
        return read_digits(token, one_as_yao=True)
    if len(token.replace(",", "").partition(".")[0]) > 16:
        return read_digits(token.replace(",", "").replace(".", ""), one_as_yao=True)
    return _read_quantity(token, rest)


_SYMBOL_WORDS: Final = {
    "℃": "摄氏度",
    "℉": "华氏度",
    "°": "度",
    "&": "和",
    "＆": "和",
    "×": "乘",  # 3×4米 is said 三乘四米
}


@_rule("leftover symbols", "[" + "".join(_SYMBOL_WORDS) + "]")
def _symbol_word(match: re.Match[str]) -> str:
    return _SYMBOL_WORDS[match[0]]


@_rule("plus signs between words", r"(?<=[" + _HAN + r"]) ?\+ ?(?=[" + _HAN + "])")
def _plus(match: re.Match[str]) -> str:
    return "加"  # 互联网+政务服务 is said 互联网加政务服务


@_rule("per-unit slashes", r"(?<=[元角分米里吨斤亩克升度时秒次人户])/(?=[" + _HAN + "])")
def _per_unit(match: re.Match[str]) -> str:
    return "每"  # 元/亩 -> 元每亩, 公里/小时 -> 公里每小时


@_rule("slashes between words", r"(?<=[" + _HAN + r"])/(?=[" + _HAN + "])")
def _slash_between_words(match: re.Match[str]) -> str:
    return "、"  # 党员/群众: a short pause, as 、 is said


@_rule(
    "range marks between readings",
    r"(?<=[" + _HAN + r"]) ?(?:~|(?<!—)[\-–—](?!—)) ?(?=[" + _NUMERAL_CHARS + "负]|次日)",
)
def _range_mark(match: re.Match[str]) -> str:
    return "到"  # 一日-十二月, left over after both sides were read


@_rule("tildes between words", r"(?<=[" + _HAN + r"]) ?~ ?(?=[" + _HAN + "])")
def _tilde(match: re.Match[str]) -> str:
    return "到"  # 周一~周五


@_rule("markup symbols", r"[*＊#＃_]+")
def _markup(match: re.Match[str]) -> str:
    return ""


@_rule("quotation marks", r"[“”‘’\"「」『』《》〈〉]|(?<=[" + _CJK + r"])'|'(?=[" + _CJK + "])")
def _quotation_mark(match: re.Match[str]) -> str:
    # Said aloud they are noise; the words inside are kept (书名 included).
    return ""


@_rule("brackets", r"[（(〔［\[）)〕］\]】〗]|[【〖]")
def _bracket(match: re.Match[str]) -> str:
    # （星期四） and 【通知】 become short pauses; tidying removes a pause that
    # would land at the start or end of a line or next to other punctuation.
    return "" if match[0] in "【〖" else "，"


@_rule("ellipses and dashes", r"…+|\.{3,}|。{2,}|·{3,}|—{2,}")
def _pause(match: re.Match[str]) -> str:
    return "，"


_FULL_WIDTH_PUNCTUATION: Final = {",": "，", ";": "；", ":": "：", "!": "！", "?": "？", ".": "。"}


@_rule(
    "ASCII punctuation next to Chinese",
    r"(?<=[" + _CJK + r"]) ?([,;:!?.])|([,;:!?]) ?(?=[" + _CJK + "])",
)
def _full_width(match: re.Match[str]) -> str:
    return _FULL_WIDTH_PUNCTUATION[match[1] or match[2]]


_PAUSES: Final = "，。！？；：、"


@_rule("doubled pauses", r"，+(?=[" + _PAUSES + "])|(?<=[" + _PAUSES + "])，+")
def _doubled_pause(match: re.Match[str]) -> str:
    return ""


@_rule("pauses at line ends", r"(?m)^ *，+|，+ *$")
def _pause_at_line_end(match: re.Match[str]) -> str:
    return ""


# Why this order (each rule sees the output of the ones above it):
#  1. Unit abbreviations become Chinese first, so every later rule sees 5公里,
#     never 5km, and the measure-word lookaheads work on one vocabulary.
#     Roman numerals (Ⅲ级) and circled list numbers (①) become Chinese numbers.
#  2. Masked, landline, toll-free and mobile numbers: their dashes and digit
#     runs would otherwise be read as ranges, minus signs and huge quantities.
#  3. Dates (2026-11-25, 2026/11/25, 2026.11.25) before ranges, fractions and
#     decimals, which would each claim a piece of them; years (digit by digit)
#     before anything that reads 2026 as 两千零二十六.
#  4. Clock times before ratios and ranges (8:30-17:30 is one time range).
#  5. Temperatures and percentages own their signs and ranges (-3~5℃,
#     10%-20%), so they run before the generic minus and range rules.
#  6. Ordinals before phone numbers (第110 is not a phone number) and before
#     the 两 rule (第2 is 第二).
#  7. Service and phone-context numbers before ranges, money and quantities.
#  8. Range dashes after units, then minus signs, then plain ranges: a dash is
#     a range mark only once we know it is not a minus sign and vice versa.
#  9. Money (元角分) after ranges (5-10元 is 五到十元), before plain numbers.
# 10. Fractions, dotted sequences, ratios and codes claim their special shapes;
#     plain numbers then read every digit that is left. No rule below reads
#     digits, which is why the output never contains one.
# 11. Symbols, brackets, quotes and punctuation last: the rules above use
#     brackets and ASCII punctuation as context (（0471）1234567, 1,376.50).
_RULES: Final[tuple[_Rule, ...]] = (
    _unit_abbreviation,
    _unit_symbol,
    _roman,
    _circled,
    _masked_number,
    _times,
    _landline,
    _toll_free,
    _mobile,
    _numeric_date,
    _numeric_year_month,
    _dotted_day_range,
    _year_range,
    _serial_number,
    _year,
    _document_year,
    _clock,
    _temperature,
    _percentage,
    _ordinal,
    _phone_context_number,
    _dash_after_unit,
    _minus,
    _number_range,
    _prefixed_money,
    _money,
    _fraction,
    _dotted,
    _ratio,
    _latin_code,
    _list_marker,
    _plain_number,
    _symbol_word,
    _plus,
    _per_unit,
    _slash_between_words,
    _range_mark,
    _tilde,
    _markup,
    _quotation_mark,
    _bracket,
    _pause,
    _full_width,
    _doubled_pause,
    _pause_at_line_end,
)


# --------------------------------------------------------------------------
# Cleaning before the rules, tidying after them
# --------------------------------------------------------------------------

# Full-width digits, letters and the signs the rules look for become ASCII, so
# one set of rules serves both; Chinese punctuation (，：（）) stays as it is.
_TO_ASCII: Final[dict[int, str | int | None]] = {
    **{code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)},  # ０-９
    **{code: code - 0xFEE0 for code in range(0xFF21, 0xFF3B)},  # Ａ-Ｚ
    **{code: code - 0xFEE0 for code in range(0xFF41, 0xFF5B)},  # ａ-ｚ
    ord("％"): "%",
    ord("－"): "-",
    ord("−"): "-",  # U+2212 minus sign
    ord("～"): "~",
    ord("／"): "/",
    ord("＋"): "+",
    ord("\u3000"): " ",
    ord("\u00a0"): " ",
    ord("\t"): " ",
    ord("\u2028"): "\n",
    ord("\u2029"): "\n",
    ord("\ufeff"): None,  # a byte-order mark pasted from a file
    ord("\u200b"): None,  # zero-width space
}

_KEYCAP: Final = re.compile("([0-9#*])\ufe0f?\u20e3")
_PICTOGRAPH_CHARS: Final = (
    "\U0001f000-\U0001faff"  # mahjong … emoticons, transport, symbols, flags
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats (☀ ☎ ✅)
    "\u2b00-\u2bff"  # arrows and stars (⭐)
    "\u231a\u231b\u23e9-\u23fa"  # ⌚ ⌛ ⏰ …
)
_EMOJI_JOINERS: Final = "\u200d\ufe0e\ufe0f\u20e3\U000e0020-\U000e007f"
_PICTOGRAPHS: Final = re.compile(f"[{_EMOJI_JOINERS}]*(?:[{_PICTOGRAPH_CHARS}][{_EMOJI_JOINERS}]*)+")
_SPACES: Final = re.compile(r" {2,}")
# A space between two Chinese words is a pause someone typed (移风易俗 红白喜事);
# spaces between single characters (各 位 村 民, pasted from a PDF) are noise.
_SPACE_AS_PAUSE: Final = re.compile(f"(?<=[{_HAN}]{{2}}) (?=[{_HAN}]{{2}})")
_SPACE_BETWEEN_CJK: Final = re.compile(f"(?<=[{_CJK}]) (?=[{_CJK}])")


def _find_control_chars(text: str) -> list[int]:
    return [offset for offset, char in enumerate(text) if unicodedata.category(char) == "Cc" and char not in "\n\t"]


# Letters and digits the Mandarin voices can read: Han characters and Latin letters (spelt out,
# as in CT, App); digits become Chinese numbers. Anything else is read as garbage: espeak-ng's
# cmn-latn-pinyin voice says Mongolian script as strings of code-point digits (11 s of noise for
# two words) and Cyrillic letter by letter in English; Microsoft's zh-CN voices skip or mangle it.
_SPEAKABLE_SCRIPTS: Final = ("CJK ", "IDEOGRAPHIC ", "LATIN ", "FULLWIDTH LATIN ", "DIGIT ", "FULLWIDTH DIGIT ")
_SCRIPT_NAMES: Final = {
    "MONGOLIAN": "蒙古文",
    "CYRILLIC": "西里尔字母（俄文等）",
    "ARABIC": "阿拉伯字母（维吾尔文、哈萨克文等）",
    "TIBETAN": "藏文",
    "HANGUL": "朝鲜文（韩文）",
    "HIRAGANA": "日文假名",
    "KATAKANA": "日文假名",
    "HALFWIDTH KATAKANA": "日文假名",
    "GREEK": "希腊字母",
    "THAI": "泰文",
    "BOPOMOFO": "注音符号",
    "YI": "彝文",
}


# Only these need a look in the Unicode database (ASCII and Chinese are the bulk of every notice).
_NOT_ASCII_OR_CJK: Final = re.compile(f"[^\x00-\x7f{_HAN}\u3000-\u303f\uff00-\uff5f]")


def _unsupported_script(char: str) -> str | None:
    """The Chinese name of ``char``'s script if it is a letter or digit no engine can read, else None."""
    category = unicodedata.category(char)
    if not (category[0] == "L" or category == "Nd"):
        return None
    name = unicodedata.name(char, "")
    if name.startswith(_SPEAKABLE_SCRIPTS) or name.startswith("MODIFIER LETTER"):
        return None
    for script, spoken in _SCRIPT_NAMES.items():
        if name.startswith(script + " "):
            return spoken
    return "其他文字"


def _validate(text: str, max_chars: int) -> str:
    """Reject what cannot be spoken; return the text with line ends unified."""
    if not text or not text.strip():
        raise TextError.empty()
    if len(text) > max_chars:
        raise TextError.too_long(len(text), max_chars)
    # Windows line ends (from a browser textarea) are newlines, not control characters.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    control_offsets = _find_control_chars(text)
    if control_offsets:
        first = control_offsets[0]
        raise TextError.control_char(first, text[first], len(control_offsets))
    foreign = [
        (match.start(), script)
        for match in _NOT_ASCII_OR_CJK.finditer(text)
        if (script := _unsupported_script(match[0])) is not None
    ]
    if foreign:
        first, script = foreign[0]
        raise TextError.unsupported_script(first, text[first], script, len(foreign))
    return text


# Markdown bold pasted from a chat window (**时间：**2026年, 请拨打**12345**): the stars go before
# any rule runs, so they neither hide a number from the rules nor look like a masked number.
# A mask's stars never enclose text that starts with a digit or letter and ends before more stars.
_MARKDOWN_BOLD: Final = re.compile(r"(?<![*＊0-9])[*＊]{2}([^*＊\s][^*＊\n]*?)[*＊]{2}(?![*＊])")


def _clean(text: str) -> tuple[str, bool]:
    """Unify digit and space forms, drop markdown bold and pictographs; say whether pictographs were dropped."""
    text = text.translate(_TO_ASCII)
    text = _KEYCAP.sub(r"\1", text)
    text = _MARKDOWN_BOLD.sub(r"\1", text)
    without_pictographs = _PICTOGRAPHS.sub("", text)
    return without_pictographs, without_pictographs != text


def _tidy(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _SPACE_AS_PAUSE.sub("，", text)
    text = _SPACE_BETWEEN_CJK.sub("", text)
    lines = (line.strip(" ") for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _is_speakable(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def normalize(text: str, *, max_chars: int = 5000) -> str:
    """Return the spoken form of ``text``, for a TTS engine without SSML.

    Raises :class:`tts.errors.TextError` for empty text, text longer than
    ``max_chars`` characters, control characters other than newline and tab,
    text with nothing speakable in it (punctuation, symbols or emoji only), and
    letters of a script the Mandarin voices cannot read (Mongolian, Cyrillic,
    Tibetan, …). Latin letters pass through unchanged; engines spell them out.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = _validate(text, max_chars)
    text, pictographs_removed = _clean(text)
    for rule in _RULES:
        text = rule.apply(text)
    text = _tidy(text)
    if not any(_is_speakable(char) for char in text):
        raise TextError.no_speakable(pictographs_removed=pictographs_removed)
    return text


# --------------------------------------------------------------------------
# Chunking for engine calls
# --------------------------------------------------------------------------

_SENTENCE: Final = re.compile(r"[^。！？；…!?;]*(?:[。！？；…!?;]+[”’」』）)》]*|$)")
_CLAUSE_MARKS: Final = "，、,：:"
# Spans that must stay in one chunk: a number's reading with its sign, unit or
# 元角分 (十二点五万元, 零下五摄氏度, 百分之十), a phone number with its pause
# (零四七幺，幺二三四五六七), and runs of Latin letters or digits.
_UNBREAKABLE: Final = re.compile(
    f"(?:零下|负)?(?:百分之|千分之)?[{_NUMERAL_CHARS}]+"
    f"(?:[元角分，][{_NUMERAL_CHARS}]+)*(?:摄氏度|[元角分年月日号时秒])?"
    r"|[A-Za-z0-9]+"
)


def _sentences(line: str) -> Iterator[str]:
    for match in _SENTENCE.finditer(line):
        if match[0]:
            yield match[0]


def _clauses(sentence: str) -> Iterator[str]:
    """Split after each comma-like mark, except one inside a number (零四七幺，幺二…)."""
    start = 0
    for index, char in enumerate(sentence):
        if char not in _CLAUSE_MARKS:
            continue
        inside_number = (
            0 < index < len(sentence) - 1
            and sentence[index - 1] in _NUMERAL_CHARS
            and sentence[index + 1] in _NUMERAL_CHARS
        )
        if not inside_number:
            yield sentence[start : index + 1]
            start = index + 1
    if start < len(sentence):
        yield sentence[start:]


def _hard_pieces(clause: str, max_len: int) -> Iterator[str]:
    """Cut a clause with no usable mark, never inside an unbreakable span."""
    forbidden: set[int] = set()
    for span in _UNBREAKABLE.finditer(clause):
        forbidden.update(range(span.start() + 1, span.end()))
    while len(clause) > max_len:
        cut = next((i for i in range(max_len, 0, -1) if i not in forbidden), max_len)
        yield clause[:cut]
        clause = clause[cut:]
        forbidden = {i - cut for i in forbidden if i > cut}
    if clause:
        yield clause


def _pieces(line: str, max_len: int) -> Iterator[str]:
    for sentence in _sentences(line):
        if len(sentence) <= max_len:
            yield sentence
            continue
        for clause in _clauses(sentence):
            if len(clause) <= max_len:
                yield clause
            else:
                yield from _hard_pieces(clause, max_len)


def _pack(pieces: Iterator[str], max_len: int) -> Iterator[str]:
    """Join consecutive pieces while they fit: fewer, more natural engine calls."""
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > max_len:
            yield current
            current = ""
        current += piece
    if current:
        yield current


def split_sentences(text: str, *, max_len: int = 200) -> list[str]:
    """Cut ``text`` into chunks of at most ``max_len`` characters, one engine call each.

    Cuts fall at sentence ends (。！？；… and line breaks) first, then after
    commas, and only when a single clause is still too long, between characters
    outside a number's reading or a Latin word; a cut lands inside one only if
    that reading alone is longer than ``max_len``. Consecutive sentences share a
    chunk while they fit; no chunk crosses a line break. Joined together the
    chunks give back every non-whitespace character of ``text``, in order.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    chunks: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped:
            chunks.extend(chunk.strip() for chunk in _pack(_pieces(stripped, max_len), max_len))
    return [chunk for chunk in chunks if chunk]
