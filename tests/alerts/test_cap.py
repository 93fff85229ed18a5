"""Reading CAP 1.2: the specification's own examples are read as they are; hostile or broken ones refused."""

from __future__ import annotations

import pytest

from alerts.cap import CapRefused, parse_cap
from tests.alerts.fixtures import OASIS_EXAMPLES, cap_bytes


@pytest.mark.parametrize("name", OASIS_EXAMPLES)
def test_every_example_of_the_specification_is_read(name: str) -> None:
    message = parse_cap(cap_bytes(name))
    assert message.identifier and message.sender and message.infos


def test_the_thunderstorm_example_keeps_its_polygon_geocodes_and_expiry() -> None:
    message = parse_cap(cap_bytes("oasis-a2-severe-thunderstorm.xml"))
    info = message.infos[0]
    assert (info.severity, info.urgency, info.certainty) == ("Severe", "Immediate", "Observed")
    area = info.areas[0]
    assert len(area.polygons[0]) == 5 and area.polygons[0][0] == area.polygons[0][-1]
    assert ("SAME", "006109") in area.geocodes
    assert info.expires is not None and info.expires > message.sent


def test_an_update_names_what_it_replaces() -> None:
    message = parse_cap(cap_bytes("oasis-a3-earthquake-update.xml"))
    assert message.msg_type == "Update"
    assert [(ref.sender, ref.identifier) for ref in message.references] == [("trinet@caltech.edu", "TRI13970876.1")]
    assert message.infos[0].areas[0].circles[0].radius_km == 0


def test_of_several_languages_the_chinese_info_is_chosen_else_the_first() -> None:
    amber = parse_cap(cap_bytes("oasis-a4-amber-alert.xml"))
    assert len(amber.infos) == 2
    chosen = amber.chosen_info()
    assert chosen is not None and chosen.language == "en-US"
    red = parse_cap(cap_bytes("cn-red-rainstorm.xml")).chosen_info()
    assert red is not None and red.event == "暴雨红色预警"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("cn-malformed.xml", "cap.schema"),
        ("cn-dtd-external-entity.xml", "cap.dtd"),
    ],
)
def test_broken_and_hostile_messages_are_refused_with_their_reason(name: str, code: str) -> None:
    with pytest.raises(CapRefused) as refused:
        parse_cap(cap_bytes(name))
    assert refused.value.code == code
    assert refused.value.reason


def test_the_external_entity_is_never_read() -> None:
    # Even a DOCTYPE hidden after a comment is refused before parsing: /etc/passwd never enters the message.
    data = b'<?xml version="1.0"?><!-- x --><!doctype alert SYSTEM "http://127.0.0.1:1/x.dtd"><alert/>'
    with pytest.raises(CapRefused) as refused:
        parse_cap(data)
    assert refused.value.code == "cap.dtd"


def test_a_billion_laughs_is_refused_unexpanded() -> None:
    entities = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};">' for i in range(1, 20))
    data = f'<!DOCTYPE alert [<!ENTITY l0 "ha">{entities}]><alert>&l19;</alert>'.encode()
    with pytest.raises(CapRefused) as refused:
        parse_cap(data)
    assert refused.value.code == "cap.dtd"


def test_a_message_over_the_size_limit_is_refused_unread() -> None:
    with pytest.raises(CapRefused) as refused:
        parse_cap(cap_bytes("cn-red-rainstorm.xml"), max_bytes=1000)
    assert refused.value.code == "cap.too_large"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "cap.empty"),
        (b"<alert", "cap.xml"),
        (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "cap.not_cap12"),
        ("<预警/>".encode(), "cap.not_cap12"),
    ],
)
def test_what_is_not_cap_12_is_refused(data: bytes, code: str) -> None:
    with pytest.raises(CapRefused) as refused:
        parse_cap(data)
    assert refused.value.code == code


def _red_with(old: str, new: str) -> bytes:
    return cap_bytes("cn-red-rainstorm.xml").replace(old.encode(), new.encode())


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("<msgType>Alert</msgType>", "<msgType>Update</msgType>", "cap.references"),
        ("2026-12-06T06:00:00+08:00", "2026-12-05T05:00:00+08:00", "cap.expires"),
        ("<identifier>159901-20261205060000-RAIN-RED", "<identifier>has space", "cap.identifier"),
        ("<severity>Extreme</severity>", "<severity>红色</severity>", "cap.schema"),
        ("<sent>2026-12-05T06:00:00+08:00</sent>", "<sent>2026-12-05 06:00</sent>", "cap.schema"),
        (
            "<geocode>\n        <valueName>GB/T 2260</valueName>\n        <value>159901</value>\n      </geocode>",
            "<polygon>41.0,111.0 41.1,111.1 41.0,111.2</polygon>",
            "cap.polygon",
        ),
        (
            "<geocode>\n        <valueName>GB/T 2260</valueName>\n        <value>159901</value>\n      </geocode>",
            "<circle>91.0,111.0 5</circle>",
            "cap.coordinates",
        ),
    ],
)
def test_our_own_rules_refuse_what_the_schema_lets_through(old: str, new: str, code: str) -> None:
    data = _red_with(old, new)
    assert data != cap_bytes("cn-red-rainstorm.xml"), "the fixture changed; the test no longer tests"
    with pytest.raises(CapRefused) as refused:
        parse_cap(data)
    assert refused.value.code == code


def test_the_schemas_complaint_is_told_in_chinese_and_kept_in_english_for_the_log() -> None:
    with pytest.raises(CapRefused) as refused:
        parse_cap(cap_bytes("cn-malformed.xml"))
    assert refused.value.reason == (
        "不符合 CAP 1.2 规范（第 8 行）：「范围」出现的位置不对，或缺少前面必需的元素（此处应为「消息类型」）"
    )
    assert refused.value.detail is not None and "msgType" in refused.value.detail
