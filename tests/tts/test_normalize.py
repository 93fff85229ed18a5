"""The speech-text normaliser: what a loudspeaker says for what a clerk typed."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from tts.errors import (
    TEXT_CONTROL_CHARS,
    TEXT_EMPTY,
    TEXT_NO_SPEAKABLE,
    TEXT_TOO_LONG,
    TEXT_UNSUPPORTED_SCRIPT,
    TextError,
)
from tts.normalize import normalize, read_decimal, read_digits, read_integer, split_sentences

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ASCII_DIGIT = re.compile(r"[0-9]")


def case(text: str, spoken: str, id: str) -> object:
    return pytest.param(text, spoken, id=id)


NORMALIZE_CASES = [
    # money
    case("12.5万元", "十二点五万元", "money-wan-decimal"),
    case("9,876.50元", "九千八百七十六元五角", "money-thousands-jiao"),
    case("1,376.50元", "一千三百七十六元五角", "money-thousands-jiao-2"),
    case("6,500元", "六千五百元", "money-thousands"),
    case("0.05元", "五分", "money-fen-only"),
    case("3.07元", "三元零七分", "money-yuan-fen"),
    case("0.5元", "五角", "money-jiao-only"),
    case("3.70元", "三元七角", "money-trailing-zero"),
    case("10.00元", "十元", "money-zero-cents"),
    case("1.05元", "一元零五分", "money-one-yuan-fen"),
    case("12.50元", "十二元五角", "money-twelve-fifty"),
    case("0.00元", "零元", "money-zero"),
    case("2元", "两元", "money-two-yuan"),
    case("2.50元", "两元五角", "money-two-fifty"),
    case("2,000元", "两千元", "money-two-thousand"),
    case("3.14159元", "三点一四一五九元", "money-not-money-shaped"),
    case("¥200", "二百元", "money-yen-sign"),
    case("￥9,876.50", "九千八百七十六元五角", "money-fullwidth-yen-sign"),
    case("¥200元", "二百元", "money-sign-and-yuan"),
    case("人民币5000元", "人民币五千元", "money-renminbi-prefix"),
    case("人民币12.5万元", "人民币十二点五万元", "money-renminbi-wan"),
    case("¥12.5万", "十二点五万元", "money-sign-wan"),
    case("RMB100", "人民币一百元", "money-rmb"),
    case("35.68万元", "三十五点六八万元", "money-wan-two-decimals"),
    case("86万元", "八十六万元", "money-wan-integer"),
    case("1.2亿元", "一点二亿元", "money-yi"),
    case("500元-800元", "五百元到八百元", "money-range-with-units"),
    case("1,000-2,000元", "一千到两千元", "money-range-thousands"),
    case("200元/亩", "二百元每亩", "money-per-mu"),
    # plain numbers
    case("12,345", "一万二千三百四十五", "number-thousands-separator"),
    case("1,234,567", "一百二十三万四千五百六十七", "number-millions"),
    case("3.14", "三点一四", "number-decimal"),
    case("0.5", "零点五", "number-decimal-below-one"),
    case("2.0", "二点零", "number-decimal-trailing-zero"),
    case("10000", "一万", "number-wan"),
    case("100010", "十万零一十", "number-inner-zeros"),
    case("10", "十", "number-ten"),
    case("110人", "一百一十人", "number-hundred-ten"),
    case("1005户", "一千零五户", "number-inner-zero"),
    case("12345678", "一千二百三十四万五千六百七十八", "number-below-yi"),
    case("100000000", "一亿", "number-round-yi"),
    case("1200000000", "十二亿", "number-round-yi-2"),
    case("123456789元", "一亿二千三百四十五万六千七百八十九元", "number-beyond-yi-with-unit"),
    case("123456789012", "幺二三四五六七八九零幺二", "number-beyond-yi-code"),
    case("007", "零零七", "number-leading-zero-code"),
    case("1500人", "一千五百人", "number-four-digits-not-year"),
    case("22000人", "两万二千人", "number-leading-two-wan"),
    case("2亿", "两亿", "number-two-yi"),
    case("20万", "二十万", "number-twenty-wan"),
    case("约1.2万亩", "约一点二万亩", "number-wan-mu"),
    case("2人", "两人", "liang-people"),
    case("2户", "两户", "liang-households"),
    case("2公里", "两公里", "liang-km"),
    case("2个月", "两个月", "liang-months"),
    case("2年", "两年", "liang-years"),
    case("2天", "两天", "liang-days"),
    case("1-2人", "一到两人", "liang-range-end"),
    case("12人", "十二人", "liang-not-twelve"),
    case("20人", "二十人", "liang-not-twenty"),
    case("2.6公里", "二点六公里", "liang-not-decimal"),
    case("2月", "二月", "liang-not-month"),
    case("2号楼", "二号楼", "liang-not-building-number"),
    case("2年级", "二年级", "liang-not-grade"),
    case("2组", "二组", "liang-not-group"),
    case("12345人工服务", "幺二三四五人工服务", "liang-rengong-is-not-a-person"),
    # percentages
    case("88%", "百分之八十八", "percent"),
    case("10.25%", "百分之十点二五", "percent-decimal"),
    case("10%-20%", "百分之十到百分之二十", "percent-range"),
    case("10-20%", "百分之十到百分之二十", "percent-range-one-sign"),
    case("10%~20%", "百分之十到百分之二十", "percent-range-tilde"),
    case("5‰", "千分之五", "per-mille"),
    case("-5%", "负百分之五", "percent-negative"),
    case("88 %", "百分之八十八", "percent-spaced"),
    case("50％以上", "百分之五十以上", "percent-fullwidth"),
    # years and dates
    case("2026年", "二零二六年", "year"),
    case("2026年度", "二零二六年度", "year-niandu"),
    case("2026年11月25日", "二零二六年十一月二十五日", "date-chinese"),
    case("2026-11-25", "二零二六年十一月二十五日", "date-iso"),
    case("2026/11/25", "二零二六年十一月二十五日", "date-slashes"),
    case("2026.11.25", "二零二六年十一月二十五日", "date-dots"),
    case("2026-01-05", "二零二六年一月五日", "date-zero-padded"),
    case("2026-11", "二零二六年十一月", "date-year-month"),
    case("11月25日", "十一月二十五日", "date-month-day"),
    case("11月26日至28日", "十一月二十六日至二十八日", "date-day-range-zhi"),
    case("9月1日-12月31日", "九月一日到十二月三十一日", "date-range-dash"),
    case("2026年11月25日-12月1日", "二零二六年十一月二十五日到十二月一日", "date-range-after-year"),
    case("报名时间：11.25-11.30", "报名时间：十一月二十五日到十一月三十日", "date-dotted-day-range"),
    case("10.1—10.7放假", "十月一日到十月七日放假", "date-dotted-day-range-one-month"),
    case("1.5-2.5米", "一点五到二点五米", "decimal-range-with-unit-is-not-dates"),
    case("6.5-8.5", "六点五到八点五", "decimal-range-across-months-is-not-dates"),
    case("2026-2027年度", "二零二六到二零二七年度", "year-range"),
    case("2026—2027", "二零二六到二零二七", "year-range-without-nian"),
    case("1990年代", "一九九零年代", "year-decade"),
    case("星期四", "星期四", "weekday-unchanged"),
    case("周四", "周四", "weekday-short-unchanged"),
    case("内政发〔2026〕12号", "内政发，二零二六，十二号", "document-number"),
    case("截至10月31日24时", "截至十月三十一日二十四时", "date-and-hour"),
    # clock times
    case("9:30", "九点三十分", "time"),
    case("9:05", "九点零五分", "time-zero-minutes"),
    case("8:00", "八点", "time-on-the-hour"),
    case("2:00", "两点", "time-two-oclock"),
    case("12:00", "十二点", "time-noon"),
    case("23:59:30", "二十三点五十九分三十秒", "time-seconds"),
    case("8:30-17:30", "八点三十分到十七点三十分", "time-range"),
    case("9:30至11:00", "九点三十分至十一点", "time-range-zhi"),
    case("晚上8:00-次日6:00", "晚上八点到次日六点", "time-range-overnight"),
    case("上午9:30", "上午九点三十分", "time-shangwu"),
    case("9：30", "九点三十分", "time-fullwidth-colon"),
    case("９：３０", "九点三十分", "time-fullwidth-digits"),
    case("开会时间：9:30", "开会时间：九点三十分", "time-after-a-label-colon"),
    case("时间:8:30—17:30", "时间：八点三十分到十七点三十分", "time-range-after-an-ascii-label-colon"),
    case("3:2", "三比二", "ratio"),
    case("1:10000", "一比一万", "ratio-map-scale"),
    case("25:30", "二十五比三十", "ratio-not-a-time"),
    # ranges
    case("5-10人", "五到十人", "range-dash"),
    case("6到8级", "六到八级", "range-dao"),
    case("5~10", "五到十", "range-tilde"),
    case("5～10", "五到十", "range-fullwidth-tilde"),
    case("3—5天", "三到五天", "range-em-dash"),
    case("3–5天", "三到五天", "range-en-dash"),
    case("5 - 10", "五到十", "range-spaced"),
    case("2~3人", "二到三人", "range-two-to-three"),
    case("1日-3日", "一日到三日", "range-days"),
    case("12月3日-5日", "十二月三日到五日", "range-days-after-month"),
    case("2026年1-6月", "二零二六年一到六月", "range-months"),
    case("风力4~5级，阵风7级", "风力四到五级，阵风七级", "range-wind-force"),
    case("周一~周五", "周一到周五", "range-weekdays"),
    # phone and service numbers
    case("0471-1234567", "零四七幺，幺二三四五六七", "phone-landline"),
    case("(0471)1234567", "零四七幺，幺二三四五六七", "phone-landline-parentheses"),
    case("（0471）1234567", "零四七幺，幺二三四五六七", "phone-landline-fullwidth-parentheses"),
    case("04711234567", "零四七幺，幺二三四五六七", "phone-landline-unseparated"),
    case("010-12345678", "零幺零，幺二三四五六七八", "phone-landline-beijing"),
    case("0471-1234567转8001", "零四七幺，幺二三四五六七转八零零幺", "phone-extension"),
    case("13800001111", "幺三八零零零零幺幺幺幺", "phone-mobile"),
    case("138 0000 1111", "幺三八，零零零零，幺幺幺幺", "phone-mobile-grouped"),
    case("+86 13800001111", "幺三八零零零零幺幺幺幺", "phone-mobile-country-code"),
    case("400-123-4567", "四零零，幺二三，四五六七", "phone-400"),
    case("12119", "幺二幺幺九", "service-12119"),
    case("12345", "幺二三四五", "service-12345"),
    case("拨打12345", "拨打幺二三四五", "service-12345-after-boda"),
    case("12345热线", "幺二三四五热线", "service-12345-before-rexian"),
    case("12345人", "一万二千三百四十五人", "service-shaped-count"),
    case("12315", "幺二三幺五", "service-12315"),
    case("95598", "九五五九八", "service-95"),
    case("拨打110", "拨打幺幺零", "emergency-after-boda"),
    case("110报警", "幺幺零报警", "emergency-before-baojing"),
    case("120急救", "幺二零急救", "emergency-before-jijiu"),
    case("火警电话：119", "火警电话：幺幺九", "emergency-after-dianhua"),
    case("共110人", "共一百一十人", "emergency-shaped-count"),
    case("110", "一百一十", "emergency-shaped-without-context"),
    case("第110", "第一百一十", "emergency-shaped-ordinal"),
    case("报警请拨110或119", "报警请拨幺幺零或幺幺九", "emergency-listed-after-another"),
    case("共110人、120人", "共一百一十人、一百二十人", "emergency-shaped-counts-listed"),
    case("（联系电话：0471-6231234）。", "联系电话：零四七幺，六二三幺二三四。", "phone-in-brackets"),
    case("联系电话：6123456", "联系电话：六幺二三四五六", "phone-after-lianxidianhua"),
    case("报名电话：15847112345", "报名电话：幺五八四七幺幺二三四五", "phone-mobile-after-label"),
    case("拨付资金500", "拨付资金五百", "phone-bofu-is-not-dialling"),
    case("拨款100万元", "拨款一百万元", "phone-bokuan-is-not-dialling"),
    case("联系电话：6231234、6231235", "联系电话：六二三幺二三四、六二三幺二三五", "phone-second-local-number"),
    case(
        "电话：0471-6231234，6231235", "电话：零四七幺，六二三幺二三四，六二三幺二三五", "phone-second-after-landline"
    ),
    case("电话6231234、6231235转8001", "电话六二三幺二三四、六二三幺二三五转八零零幺", "phone-second-with-extension"),
    case(
        "收入1234567、支出2345678", "收入一百二十三万四千五百六十七、支出二百三十四万五千六百七十八", "listed-amounts"
    ),
    case("身份证后四位1234", "身份证后四位幺二三四", "digits-after-last-four"),
    case("手机尾号1111", "手机尾号幺幺幺幺", "digits-after-weihao"),
    case("公告编号：2026-001", "公告编号：二零二六，零零幺", "serial-number-with-leading-zero"),
    case("G110国道", "G幺幺零国道", "code-road"),
    # masked numbers: the listener hears that the number was hidden, none of its digits
    case("150125********1234", "号码已隐去", "masked-id"),
    case("身份证号150125********1235；", "身份证号已隐去；", "masked-id-after-haoma-word"),
    case("身份证号：1501251958****123X", "身份证号：已隐去", "masked-id-check-x-after-colon"),
    case("身份证150125 ******** 1235", "身份证号码已隐去", "masked-id-grouped-after-noun"),
    case("138****1111", "号码已隐去", "masked-mobile"),
    case("手机138****1111", "手机号码已隐去", "masked-mobile-after-noun"),
    case("联系电话：138xxxx1111。", "联系电话：号码已隐去。", "masked-mobile-with-x"),
    case("卡号6222 **** **** 1234", "卡号已隐去", "masked-card-grouped"),
    case("李某某150125********1235", "李某某，号码已隐去", "masked-after-a-name-is-a-pause"),
    case("5**2", "五二", "masked-too-short-is-not-a-number"),
    case("**2026**年", "二零二六年", "markdown-bold-year-is-not-a-mask"),
    case("请拨打**12345**热线", "请拨打幺二三四五热线", "markdown-bold-service-number-is-not-a-mask"),
    case("**时间：**9:30", "时间：九点三十分", "markdown-bold-label"),
    case("卡号6222****5678**注意**", "卡号已隐去注意", "markdown-bold-right-after-a-mask"),
    # temperatures
    case("-5℃", "零下五摄氏度", "temperature-negative"),
    case("25°C", "二十五摄氏度", "temperature-degree-c"),
    case("-3~5℃", "零下三到五摄氏度", "temperature-range"),
    case("-10~-3℃", "零下十到零下三摄氏度", "temperature-range-both-negative"),
    case("-3℃~5℃", "零下三摄氏度到五摄氏度", "temperature-range-both-units"),
    case("零下5℃", "零下五摄氏度", "temperature-lingxia-written"),
    case("温度-20℃至-10℃", "温度零下二十摄氏度至零下十摄氏度", "temperature-range-zhi"),
    case("+5℃", "零上五摄氏度", "temperature-plus"),
    case("5-10℃", "五到十摄氏度", "temperature-range-positive"),
    case("25°", "二十五度", "degree-sign"),
    # ordinals
    case("第3", "第三", "ordinal"),
    case("第12届", "第十二届", "ordinal-jie"),
    case("第2", "第二", "ordinal-two-is-er"),
    case("第2名", "第二名", "ordinal-two-before-measure-word"),
    case("第3-5条", "第三到五条", "ordinal-range"),
    case("启动Ⅲ级应急响应", "启动三级应急响应", "roman-numeral-level"),
    case("IV级预警", "四级预警", "latin-roman-numeral-level"),
    case("VIP客户", "VIP客户", "latin-letters-are-not-roman-numerals"),
    case("①请按时参加；②带好证件", "一、请按时参加；二、带好证件", "circled-numbers-are-list-markers"),
    case("⑴开会", "一、开会", "parenthesised-number"),
    # units
    case("5km", "五公里", "unit-km"),
    case("20kg", "二十公斤", "unit-kg"),
    case("30㎡", "三十平方米", "unit-square-metre-symbol"),
    case("30m²", "三十平方米", "unit-square-metre-superscript"),
    case("30m2", "三十平方米", "unit-square-metre-ascii"),
    case("100m", "一百米", "unit-m"),
    case("3t", "三吨", "unit-t"),
    case("24h", "二十四小时", "unit-h"),
    case("60km/h", "六十公里每小时", "unit-km-per-h"),
    case("5 km", "五公里", "unit-spaced"),
    case("5-10km", "五到十公里", "unit-range"),
    case("10m³", "十立方米", "unit-cubic-metre"),
    case("100kWh", "一百千瓦时", "unit-kwh"),
    case("220V", "二百二十伏", "unit-volt"),
    case("2km", "两公里", "unit-km-liang"),
    case("5亩", "五亩", "unit-mu"),
    case("3吨", "三吨", "unit-ton"),
    case("100度电", "一百度电", "unit-du"),
    case("5G网络", "五G网络", "unit-not-a-unit"),
    # fractions and negatives
    case("1/3", "三分之一", "fraction"),
    case("2/3", "三分之二", "fraction-two-is-er"),
    case("-5", "负五", "negative"),
    case("气温为-5", "气温为负五", "negative-after-chinese"),
    case("-3.5", "负三点五", "negative-decimal"),
    case("1.2.3", "一点二点三", "dotted-section-number"),
    # quotes, brackets, punctuation
    case("“五议两公开”", "五议两公开", "quotes-removed"),
    case("（星期四）", "星期四", "brackets-alone"),
    case("定于12月3日（星期四）上午", "定于十二月三日，星期四，上午", "brackets-become-pauses"),
    case("《民法典》", "民法典", "book-title-kept"),
    case("学习《民法典》相关规定", "学习民法典相关规定", "book-title-inline"),
    case("【紧急通知】各位村民", "紧急通知，各位村民", "lenticular-brackets"),
    case("「注意」安全", "注意安全", "corner-brackets"),
    case("请注意……明天停电", "请注意，明天停电", "ellipsis-pause"),
    case("请注意...明天停电", "请注意，明天停电", "ascii-ellipsis-pause"),
    case("测试,好的", "测试，好的", "ascii-comma-between-chinese"),
    case("你好!", "你好！", "ascii-exclamation-after-chinese"),
    case("村民大会;明天", "村民大会；明天", "ascii-semicolon"),
    case("时间:明天", "时间：明天", "ascii-colon"),
    case("1.村民大会", "一、村民大会", "list-marker"),
    case("互联网+政务服务", "互联网加政务服务", "plus-between-words"),
    case("5×5米", "五乘五米", "times-sign"),
    case("3*4米", "三乘四米", "times-star"),
    case("5x6米", "五乘六米", "times-letter-x"),
    case("**重要**通知", "重要通知", "markup-asterisks"),
    case("党员/群众", "党员、群众", "slash-between-words"),
    case("移风易俗 红白喜事", "移风易俗，红白喜事", "space-between-words-is-pause"),
    case("各 位 村 民", "各位村民", "spaces-between-characters-dropped"),
    case("第一行\n\n第二行", "第一行\n第二行", "blank-lines-collapsed"),
    case("第一行\r\n第二行", "第一行\n第二行", "windows-line-end"),
    case("注意\t安全", "注意，安全", "tab-between-words-is-pause"),
    # mixed scripts and pictographs
    case("CT检查", "CT检查", "latin-abbreviation"),
    case("下载App", "下载App", "latin-word"),
    case("App2.0版本", "App二点零版本", "latin-version"),
    case("ａｂｃ１２３", "abc幺二三", "fullwidth-latin-and-digits"),
    case("Lǜ色通道", "Lǜ色通道", "latin-with-pinyin-tone-marks"),
    case("明天停电😀", "明天停电", "emoji-removed"),
    case("👍🏽好", "好", "emoji-skin-tone-removed"),
    case("👨‍👩‍👧家庭", "家庭", "emoji-zwj-sequence-removed"),
    case("☎0471-1234567", "零四七幺，幺二三四五六七", "telephone-symbol-removed"),
    case("1️⃣号", "一号", "keycap-digit"),
]


@pytest.mark.parametrize(("text", "spoken"), NORMALIZE_CASES)
def test_normalize_reads_text_as_an_announcer_would(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_the_table_covers_at_least_150_cases() -> None:
    assert len(NORMALIZE_CASES) >= 150


# -- the sample notices -----------------------------------------------------


def load_notices() -> list[dict[str, str]]:
    notices: list[dict[str, str]] = json.loads((FIXTURES / "notices.json").read_text(encoding="utf-8"))
    return notices


NOTICE_EXPECTATIONS = {
    "disclosure_finance": [
        "二零二六年十月财务收支",
        "十二点五万元",
        "八点二万元",
        "四点三万元",
        "九千八百七十六元五角",
        "六千五百元",
        "一千三百七十六元五角",
        "两千元",
        "截至十月三十一日",
        "三十五点六八万元",
        "十一月三十日前",
        "监督电话零四七幺，幺二三四五六七。",
    ],
    "disclosure_village": [
        "以下三户为二零二六年第四季度",
        "家庭人口两人",
        "家庭人口一人",
        "家庭人口三人",
        "身份证号幺五零幺二五幺九五八零三幺二幺二三五",
        "二零二六年十一月二十五日至十二月一日",
        "共七天",
    ],
    "disclosure_party": [
        "根据五议两公开决策程序",
        "两委会商议",
        "二零二六年十二月三日，星期四，上午九点三十分在村党群服务中心",
        "全长二点六公里",
        "八十六万元",
    ],
    "civility": [
        "不超过五百元",
        "不超过二百元",
        "好家风户十二户",
        "孝老爱亲户八户",
        "移风易俗、树立文明新风",
    ],
    "emergency": [
        "十一月二十六日至二十八日",
        "六到八级大风",
        "报警电话幺二幺幺九。",
        "紧急通知！",
    ],
    "service": [
        "二零二七年度城乡居民",
        "二零二六年九月一日至十二月三十一日",
        "每人每年四百元",
        "代办电话幺三八零零零零幺幺幺幺，工作日八点三十分到十七点三十分。",
    ],
}


def test_the_fixture_has_the_six_sample_notices() -> None:
    kinds = [notice["kind"] for notice in load_notices()]
    assert sorted(kinds) == sorted(NOTICE_EXPECTATIONS)


@pytest.mark.parametrize("kind", sorted(NOTICE_EXPECTATIONS))
def test_every_number_in_a_sample_notice_is_read_out(kind: str) -> None:
    (notice,) = [notice for notice in load_notices() if notice["kind"] == kind]
    spoken = normalize(notice["body"])
    for expected in NOTICE_EXPECTATIONS[kind]:
        assert expected in spoken
    assert not ASCII_DIGIT.search(spoken), spoken
    assert not ASCII_DIGIT.search(normalize(notice["title"]))


def test_the_finance_notice_is_read_in_full() -> None:
    (notice,) = [notice for notice in load_notices() if notice["kind"] == "disclosure_finance"]
    assert normalize(notice["body"]) == (
        "各位村民：现将本村二零二六年十月财务收支情况公开如下。本月收入合计十二点五万元，"
        "其中上级转移支付八点二万元，集体土地承包费四点三万元；本月支出合计九千八百七十六元五角，"
        "其中道路维修六千五百元，办公费用一千三百七十六元五角，保洁人员工资两千元。"
        "截至十月三十一日，村集体账面余额为三十五点六八万元。如有疑问，请于十一月三十日前"
        "到村委会财务室咨询，或拨打监督电话零四七幺，幺二三四五六七。"
    )


def test_the_masked_dibao_notice_says_the_id_was_hidden_and_none_of_its_digits() -> None:
    from tts.privacy import mask

    (notice,) = [notice for notice in load_notices() if notice["kind"] == "disclosure_village"]
    masked = mask(notice["body"])
    assert "150125********1235" in masked
    spoken = normalize(masked)
    assert "身份证号已隐去；王某某" in spoken
    # Neither the region code nor the last four reach the loudspeaker, in either reading of 1.
    for digits in ("150125", "1235"):
        for reading in (read_digits(digits), read_digits(digits, one_as_yao=True)):
            assert reading not in spoken


# -- errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "   ", "\n\t \n", "\u3000"], ids=["empty", "spaces", "newlines-tabs", "ideographic-space"]
)
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(TextError) as caught:
        normalize(text)
    assert caught.value.code == TEXT_EMPTY
    assert "为空" in caught.value.message


def test_text_longer_than_the_limit_is_refused_saying_how_long_and_the_limit() -> None:
    with pytest.raises(TextError) as caught:
        normalize("村" * 11, max_chars=10)
    error = caught.value
    assert error.code == TEXT_TOO_LONG
    assert "11" in error.message and "10" in error.message
    assert error.detail == "text has 11 characters; the limit is 10"
    assert error.fields == {"text": error.message}


def test_text_exactly_at_the_limit_is_accepted() -> None:
    assert normalize("村" * 10, max_chars=10) == "村" * 10


def test_the_default_limit_is_5000_characters() -> None:
    assert normalize("村" * 5000) == "村" * 5000
    with pytest.raises(TextError) as caught:
        normalize("村" * 5001)
    assert caught.value.code == TEXT_TOO_LONG


@pytest.mark.parametrize(
    "text",
    ["。。。！", "%%%", "……", "，、；", "¥", "---"],
    ids=["stops", "percent-signs", "ellipsis", "commas", "currency-sign", "dashes"],
)
def test_text_with_only_punctuation_or_symbols_is_refused(text: str) -> None:
    with pytest.raises(TextError) as caught:
        normalize(text)
    assert caught.value.code == TEXT_NO_SPEAKABLE
    assert "标点或符号" in caught.value.message


@pytest.mark.parametrize(
    ("text", "offset", "codepoint"),
    [("村民\x07大会", 2, "U+0007"), ("\x00", 0, "U+0000"), ("通知\x1b[0m", 2, "U+001B"), ("a\x0cb", 1, "U+000C")],
    ids=["bell", "nul", "escape", "form-feed"],
)
def test_control_characters_are_refused_with_their_position(text: str, offset: int, codepoint: str) -> None:
    with pytest.raises(TextError) as caught:
        normalize(text)
    error = caught.value
    assert error.code == TEXT_CONTROL_CHARS
    assert f"第{offset + 1}个字符" in error.message
    assert error.detail is not None and f"{codepoint} at offset {offset}" in error.detail


def test_the_first_of_several_control_characters_is_reported_with_the_count() -> None:
    with pytest.raises(TextError) as caught:
        normalize("一\x01二\x02三")
    assert "第2个字符" in caught.value.message
    assert caught.value.detail == "control character U+0001 at offset 1 (2 control character(s) in total)"


@pytest.mark.parametrize("text", ["😀", "😀👍🏽🎉", "🇨🇳", "❤️ 🔥！"], ids=["one", "several", "flag", "with-punctuation"])
def test_emoji_only_text_is_refused_as_unspeakable(text: str) -> None:
    with pytest.raises(TextError) as caught:
        normalize(text)
    assert caught.value.code == TEXT_NO_SPEAKABLE
    assert "表情" in caught.value.message


@pytest.mark.parametrize(
    ("text", "offset", "script"),
    [
        ("ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ", 0, "蒙古文"),
        ("明天开会 ᠮᠣᠩᠭᠣᠯ 2026年", 5, "蒙古文"),
        ("通知Привет", 2, "西里尔字母"),
        ("请注意ئۇيغۇرچە", 3, "阿拉伯字母"),
        ("扎西德勒བཀྲ་ཤིས", 4, "藏文"),
        ("안녕하세요", 0, "朝鲜文"),
        ("こんにちは", 0, "日文假名"),
        ("村᠑号", 1, "蒙古文"),  # a Mongolian digit is not one of ours either
    ],
    ids=["mongolian", "mongolian-after-chinese", "cyrillic", "uyghur-arabic", "tibetan", "hangul", "kana", "digit"],
)
def test_letters_the_mandarin_voices_cannot_read_are_refused_naming_the_script_and_place(
    text: str, offset: int, script: str
) -> None:
    with pytest.raises(TextError) as caught:
        normalize(text)
    error = caught.value
    assert error.code == TEXT_UNSUPPORTED_SCRIPT
    assert f"第{offset + 1}个字符“{text[offset]}”是{script}" in error.message
    assert "上传录音" in error.message
    assert error.detail is not None and f"U+{ord(text[offset]):04X} at offset {offset}" in error.detail


def test_a_limit_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        normalize("村", max_chars=0)


def test_text_errors_are_invalid_input_for_the_web_layer() -> None:
    from common.errors import InvalidInput

    with pytest.raises(InvalidInput):
        normalize("")


# -- the number core ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "spoken"),
    [
        (0, "零"),
        (1, "一"),
        (10, "十"),
        (11, "十一"),
        (20, "二十"),
        (100, "一百"),
        (101, "一百零一"),
        (110, "一百一十"),
        (200, "二百"),
        (1001, "一千零一"),
        (1010, "一千零一十"),
        (2000, "两千"),
        (10000, "一万"),
        (10001, "一万零一"),
        (20000, "两万"),
        (100010, "十万零一十"),
        (1000000, "一百万"),
        (100000000, "一亿"),
        (100000001, "一亿零一"),
        (110000000, "一亿一千万"),
        (1000100000000, "一万零一亿"),
        (-5, "负五"),
    ],
)
def test_read_integer(value: int, spoken: str) -> None:
    assert read_integer(value) == spoken


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        ("12.5", "十二点五"),
        ("0.05", "零点零五"),
        ("3.10", "三点一零"),
        ("-3.5", "负三点五"),
        ("1,376.5", "一千三百七十六点五"),
        ("7", "七"),
    ],
)
def test_read_decimal(number: str, spoken: str) -> None:
    assert read_decimal(number) == spoken


def test_read_digits_says_yao_only_when_asked() -> None:
    assert read_digits("2011") == "二零一一"
    assert read_digits("12119", one_as_yao=True) == "幺二幺幺九"


@pytest.mark.parametrize("bad", ["", "12a", "１２", "1.5"])
def test_read_digits_refuses_anything_but_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        read_digits(bad)


@pytest.mark.parametrize("bad", ["", "1.", ".5", "1,23", "abc"])
def test_read_decimal_refuses_what_is_not_a_decimal(bad: str) -> None:
    with pytest.raises(ValueError):
        read_decimal(bad)


# -- split_sentences --------------------------------------------------------------

NUMBER_READINGS = ["九千八百七十六元五角", "十二点五万元", "零下五摄氏度", "百分之十点二五", "一千三百七十六元五角"]


def non_space(text: str) -> str:
    return re.sub(r"\s", "", text)


def all_sample_bodies_spoken() -> str:
    return "\n".join(normalize(notice["body"]) for notice in load_notices())


@pytest.mark.parametrize("max_len", [20, 40, 80, 200])
def test_chunks_of_the_sample_notices_fit_and_keep_every_character(max_len: int) -> None:
    text = all_sample_bodies_spoken()
    chunks = split_sentences(text, max_len=max_len)
    assert chunks and all(0 < len(chunk) <= max_len for chunk in chunks)
    assert non_space("".join(chunks)) == non_space(text)


def test_short_sentences_share_a_chunk_and_cuts_fall_at_sentence_ends() -> None:
    assert split_sentences("一二三。四五六！七八九？十。", max_len=8) == ["一二三。四五六！", "七八九？十。"]


def test_each_line_is_chunked_on_its_own() -> None:
    assert split_sentences("通知\n明天停电。后天来电。", max_len=50) == ["通知", "明天停电。后天来电。"]


def test_a_long_sentence_is_cut_after_commas() -> None:
    sentence = "各位村民，" + "请于明天上午到村委会领取补贴，" * 3 + "过期不候。"
    chunks = split_sentences(sentence, max_len=20)
    # Clauses of one sentence still share a chunk while they fit.
    assert chunks == [
        "各位村民，请于明天上午到村委会领取补贴，",
        "请于明天上午到村委会领取补贴，",
        "请于明天上午到村委会领取补贴，过期不候。",
    ]


def test_a_cut_never_falls_inside_a_number_reading() -> None:
    # No punctuation at all: the only way to fit is to cut between words.
    text = "本月支出" + "村里支出".join(NUMBER_READINGS * 4)
    chunks = split_sentences(text, max_len=15)
    assert all(len(chunk) <= 15 for chunk in chunks)
    found = [reading for chunk in chunks for reading in NUMBER_READINGS if reading in chunk]
    assert sorted(found) == sorted(NUMBER_READINGS * 4)
    assert "".join(chunks) == text


def test_a_phone_number_reading_is_not_cut_at_its_inner_pause() -> None:
    text = "如有疑问请拨打村委会的监督电话零四七幺，幺二三四五六七。"
    chunks = split_sentences(text, max_len=24)
    assert any("零四七幺，幺二三四五六七" in chunk for chunk in chunks)
    assert "".join(chunks) == text


def test_a_reading_longer_than_the_limit_is_cut_as_a_last_resort() -> None:
    chunks = split_sentences("幺" * 25, max_len=10)
    assert chunks == ["幺" * 10, "幺" * 10, "幺" * 5]


def test_whitespace_only_text_has_no_chunks() -> None:
    assert split_sentences(" \n \n") == []


def test_a_chunk_limit_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        split_sentences("村", max_len=0)


# -- no ASCII digit ever survives -------------------------------------------------

WORDS = [
    "村民",
    "共",
    "合计",
    "电话",
    "拨打",
    "约",
    "第",
    "气温",
    "截至",
    "上午",
    "，",
    "。",
    "、",
    " ",
    "（",
    "）",
    "App",
    "",
]
UNITS = [
    "元",
    "万元",
    "亿元",
    "人",
    "户",
    "年",
    "月",
    "日",
    "号",
    "%",
    "‰",
    "℃",
    "km",
    "kg",
    "㎡",
    "公里",
    "亩",
    "天",
    "级",
    "",
    "",
    "",
]
SEPARATORS = ["-", "~", "—", "/", ":", "：", ".", ",", "至", "到", "", " "]


def random_number(rng: random.Random) -> str:
    shape = rng.randrange(7)
    if shape == 0:
        return str(rng.randrange(10))
    if shape == 1:
        return str(rng.randrange(10 ** rng.randrange(1, 20)))
    if shape == 2:
        return f"{rng.randrange(10**6):,}"
    if shape == 3:
        return f"{rng.random() * 10 ** rng.randrange(6):.{rng.randrange(1, 4)}f}"
    if shape == 4:
        return "0" + str(rng.randrange(10 ** rng.randrange(1, 12)))
    if shape == 5:
        return f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 32):02d}"
    return f"{rng.randrange(25)}:{rng.randrange(60):02d}"


def random_text(rng: random.Random) -> str:
    parts: list[str] = []
    for _ in range(rng.randrange(1, 8)):
        parts.append(rng.choice(WORDS))
        if rng.random() < 0.2:
            parts.append(rng.choice(["-", "+", "¥", "人民币", "零下"]))
        parts.append(random_number(rng))
        if rng.random() < 0.5:
            parts.append(rng.choice(SEPARATORS) + random_number(rng))
        parts.append(rng.choice(UNITS))
    return "".join(parts)


def digit_soup(rng: random.Random) -> str:
    alphabet = "0123456789" * 3 + ".,-:/%~ 元年月日人第XxG*"
    return rng.choice("0123456789") + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))


def test_generated_texts_never_keep_an_ascii_digit() -> None:
    rng = random.Random(20261125)
    texts = [random_text(rng) for _ in range(1500)] + [digit_soup(rng) for _ in range(1500)]
    for text in texts:
        spoken = normalize(text)
        assert not ASCII_DIGIT.search(spoken), (text, spoken)
