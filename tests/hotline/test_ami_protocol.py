"""The AMI wire format: framing, Chinese split across reads, garbage, and refusing header injection."""

from __future__ import annotations

import pytest

from hotline.ami.protocol import AmiParser, FramingError, format_action

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
USER_EVENT = (
    "Event: UserEvent\r\nPrivilege: user,all\r\nChannel: Local/s@hotline-00000002;2\r\n"
    "CallerIDNum: 13800001111\r\nCallerIDName: 王大娘\r\nUniqueid: dt-1-ivr\r\nLinkedid: dt-1\r\n"
    "UserEvent: CxStage\r\nKind: hotline\r\nStage: 举报\r\n\r\n"
).encode()


def test_a_chinese_name_split_byte_by_byte_across_reads_arrives_intact() -> None:
    parser = AmiParser()
    stream = BANNER + USER_EVENT
    messages = []
    for index in range(len(stream)):
        messages += parser.feed(stream[index : index + 1])
    assert parser.version == "11.0.0"
    (event,) = messages
    assert event["CallerIDName"] == "王大娘" and event["Stage"] == "举报"


def test_a_character_split_between_two_messages_worth_of_reads_is_kept_whole() -> None:
    parser = AmiParser()
    parser.feed(BANNER)
    cut = USER_EVENT.index("大".encode()) + 1  # inside the three bytes of 大
    assert parser.feed(USER_EVENT[:cut]) == []
    (event,) = parser.feed(USER_EVENT[cut:] + USER_EVENT)[:1]
    assert event["CallerIDName"] == "王大娘"


def test_garbled_lines_and_messages_are_dropped_and_counted_not_raised() -> None:
    parser = AmiParser()
    garbage = b"\x00\xff nonsense without a colon\r\nmore nonsense\r\n\r\n"
    truncated_key = b"Event: Hangup\r\nUniqueid: 1\r\nthis line has no key\r\nCause:\r\n\r\n"
    messages = parser.feed(BANNER + garbage + truncated_key + USER_EVENT)
    assert [message["Event"] for message in messages] == ["Hangup", "UserEvent"]
    assert messages[0]["Cause"] == ""
    assert parser.dropped_messages == 1 and parser.dropped_lines >= 3


def test_a_repeated_key_keeps_every_value() -> None:
    parser = AmiParser(expect_banner=False)
    (event,) = parser.feed(b"Event: VarSet\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n")
    assert event["ChanVariable"] == "A=1\nB=2"


def test_a_peer_that_is_not_asterisk_is_refused() -> None:
    with pytest.raises(FramingError):
        AmiParser().feed(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_a_message_that_never_ends_is_a_framing_error() -> None:
    parser = AmiParser(expect_banner=False, max_message_bytes=1000)
    with pytest.raises(FramingError):
        parser.feed(b"Event: X\r\n" + b"Key: value\r\n" * 200)


def test_actions_are_formatted_with_variables() -> None:
    data = format_action("Originate", "cx-1", {"Channel": "Local/s@hotline", "Async": True}, {"CX_KEYS": "1"})
    assert data == (
        b"Action: Originate\r\nActionID: cx-1\r\nChannel: Local/s@hotline\r\nAsync: true\r\nVariable: CX_KEYS=1\r\n\r\n"
    )


@pytest.mark.parametrize("value", ["1\r\nAction: Command", "x\nCommand: core stop now"])
def test_a_line_break_in_a_value_can_never_smuggle_in_another_action(value: str) -> None:
    with pytest.raises(ValueError):
        format_action("Setvar", "cx-2", {"Value": value})
    with pytest.raises(ValueError):
        format_action("Originate", "cx-3", {}, {"CX_AUDIO": value})
