"""Our Asterisk configuration as rendered from the settings: ports, binds, permissions, and elderly-safe timeouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline.asterisk import IvrTimings, RenderConfig, SharedDir, Trunk, render_configuration
from hotline.phonecast import REFUSAL_REASONS
from hotline.prompts import PROMPTS

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "asterisk" / "templates"


def render(**overrides: object) -> dict[str, str]:
    values: dict[str, object] = {
        "instance_dir": "/srv/cunxiang/main",
        "system_name": "main",
        "ami_bind": "127.0.0.1",
        "ami_port": 15038,
        "ami_user": "cunxiang",
        "ami_secret": "s3cret",
        "sip_bind": "127.0.0.1",
        "sip_port": 15060,
        "fastagi_url": "agi://127.0.0.1:14573",
        "spool_dir": "/srv/cunxiang/main/spool/cunxiang",
        "prompts_dir": "/srv/cunxiang/main/sounds/cunxiang",
        "media_dir": "/srv/cunxiang/main/media",
        "case_number_length": 8,
        "pin_length": 4,
        "ivr": IvrTimings(menu_timeout_s=17.5, digit_timeout_s=16, operator_dial="PJSIP/op1&PJSIP/op2"),
        "softphone_password": "pw-for-the-softphone",
    }
    values.update(overrides)
    return render_configuration(TEMPLATES, RenderConfig(**values))  # type: ignore[arg-type]


def applications(dialplan: str, name: str) -> list[str]:
    return re.findall(rf"\b{name}\(([^\n]*)\)\s*$", dialplan, re.MULTILINE)


def test_every_port_and_bind_comes_from_the_settings() -> None:
    files = render()
    assert "bindaddr = 127.0.0.1" in files["manager.conf"] and "port = 15038" in files["manager.conf"]
    assert "bind = 127.0.0.1:15060" in files["pjsip.conf"]
    assert "agi://127.0.0.1:14573/message" in files["extensions.conf"]


def test_the_ami_user_may_do_only_what_the_service_needs() -> None:
    manager = render()["manager.conf"]
    assert "read = system,call,dialplan,user,dtmf,cdr" in manager
    assert "write = originate,call,reporting" in manager
    assert "deny = 0.0.0.0/0.0.0.0" in manager and "permit = 127.0.0.1/255.255.255.255" in manager


def test_the_trunk_is_off_until_configured_and_the_softphone_needs_a_password() -> None:
    pjsip = render(softphone_password="")["pjsip.conf"]
    assert "type = endpoint" not in pjsip
    configured = render(trunk=Trunk(host="sip.carrier.example:5060", username="0471", password="x"))["pjsip.conf"]
    assert "match = sip.carrier.example" in configured and "type = registration" in configured
    assert "server_uri = sip:sip.carrier.example:5060" in configured
    assert "[1001]\ntype = endpoint\ncontext = from-softphone" in configured


def test_no_application_is_left_to_a_default_timeout_that_hangs_up_on_a_silent_caller() -> None:
    dialplan = render()["extensions.conf"]
    # Background/WaitExten time out into t/i extensions that the stock dialplan hangs up on.
    assert not applications(dialplan, "WaitExten") and not applications(dialplan, "Background")
    for arguments in applications(dialplan, "Read"):
        timeout = arguments.split(",")[5]
        assert float(timeout) >= 15, arguments  # explicit, and long (the survey's and the menu's alike)
    assert "Read(CX_KEY,/srv/cunxiang/main/sounds/cunxiang/menu,1,,1,17.5)" in dialplan
    for arguments in applications(dialplan, "Record"):
        assert arguments.endswith("k") or arguments.endswith("qxk"), arguments  # the audio survives a hang-up
    # The message: silence detection and a maximum length from the settings, the audio kept on hang-up —
    # in two parts, the warning (a tone, "请在十秒内说完") between them, the second appended quietly.
    assert "Record(${CX_FILE}.wav,8,290,ak)" in dialplan and "Record(${CX_FILE}.wav,8,10,aqk)" in dialplan
    shorter = render(ivr=IvrTimings(record_silence_s=5, record_max_s=90, record_warning_s=15))["extensions.conf"]
    assert "Record(${CX_FILE}.wav,5,75,ak)" in shorter and "Record(${CX_FILE}.wav,5,15,aqk)" in shorter
    (operator,) = [arguments for arguments in applications(dialplan, "Dial") if "op1" in arguments]
    assert operator.startswith("PJSIP/op1&PJSIP/op2,30,")
    assert "Set(TIMEOUT(absolute)=3600)" in dialplan


def test_the_case_number_is_read_back_twice_and_the_pin_only_to_a_withheld_caller() -> None:
    dialplan = render()["extensions.conf"]
    section = dialplan.split("[hotline-readback]")[1].split("\n[")[0]
    (number,) = [arguments for arguments in applications(section, "Playback") if "case_number_is" in arguments]
    assert number.split("&").count("${CX_READBACK}") == 2 and "say_again" in number
    (pin,) = [arguments for arguments in applications(section, "Playback") if "pin_is" in arguments]
    assert pin.split("&").count("${CX_PIN_READBACK}") == 2
    assert 'GotoIf($["${CX_PIN_READBACK}" = ""]?done)' in section
    # Every way to a case ends in the read-back: a message, and a conversation with the operator.
    assert dialplan.count("Gosub(hotline-readback,s,1)") == 2


def test_the_call_limit_says_goodbye_in_every_context_a_caller_can_be_in() -> None:
    dialplan = render()["extensions.conf"]
    # TIMEOUT(absolute) jumps to T in the *current* context, or hangs up without a word if there is none.
    for context in ("hotline", "hotline-message", "hotline-readback", "hotline-status", "hotline-operator"):
        section = dialplan.split(f"[{context}]\n")[1].split("\n[")[0]
        assert "exten => T,1," in section, context
    # …and says, for the hang-up handler, that the limit (not the caller) ended the call.
    goodbye = "exten => T,1,Set(CX_END=call_limit)\n same => n,Playback(/srv/cunxiang/main/sounds/cunxiang/goodbye)"
    assert goodbye in dialplan


def test_the_phone_broadcast_number_goes_to_its_own_line_and_every_other_number_to_the_hotline() -> None:
    for context in ("from-trunk", "from-softphone"):
        section = render(phonecast_did="96110")["extensions.conf"].split(f"[{context}]\n")[1].split("\n[")[0]
        assert "exten => 96110,1,Goto(cx-phonecast,s,1)" in section
        assert "exten => _[0-9A-Za-z+*#].,1,Goto(hotline,s,1)" in section
        without = render()["extensions.conf"].split(f"[{context}]\n")[1].split("\n[")[0]
        assert "cx-phonecast" not in without
    line = render(phonecast_did="96110")["extensions.conf"].split("[cx-phonecast]\n")[1].split("\n[")[0]
    # Its own context: the service drives the call; no hotline mark in the CDR, a goodbye at the call limit.
    code = "\n".join(row for row in line.splitlines() if not row.startswith(";"))
    assert "AGI(agi://127.0.0.1:14573/phonecast,${CHANNEL(linkedid)})" in code
    assert "cx:" not in code and "exten => T,1,Playback(" in code and "hotline" not in code


def test_without_an_operator_key_0_goes_straight_to_leaving_a_message() -> None:
    dialplan = render(ivr=IvrTimings())["extensions.conf"]
    section = dialplan.split("[hotline-operator]")[1].split("\n[")[0]
    assert "Dial(" not in section and "operator_busy" in section


def test_every_prompt_the_dialplan_plays_is_written_and_no_written_prompt_is_unused() -> None:
    dialplan = render()["extensions.conf"]
    played = set(re.findall(r"/sounds/cunxiang/([a-z_]+)", dialplan))
    played |= set(re.findall(r"Gosub\(hotline-message,s,1\((?:petition|discipline),([a-z_]+)\)\)", dialplan))
    # Read back by FastAGI (hotline/ivr.py): digits and one sentence per case status.
    played |= {f"digit_{digit}" for digit in "0123456789"} | {key for key in PROMPTS if key.startswith("status_")}
    # Played by the phone-broadcast line (hotline/phonecast_line.py): the names in its source, and one
    # sentence per refusal reason.
    line_source = (Path(__file__).resolve().parents[2] / "hotline" / "phonecast_line.py").read_text(encoding="utf-8")
    played |= set(re.findall(r'"(pc_[a-z_]+)"', line_source)) | {f"pc_refused_{reason}" for reason in REFUSAL_REASONS}
    assert played - set(PROMPTS) == set(), "the dialplan plays prompts nobody wrote"
    assert set(PROMPTS) - played == set(), "prompts written but never played"


def test_paths_map_between_our_view_and_asterisks_and_never_leave_the_directory(tmp_path: Path) -> None:
    from pathlib import PurePosixPath

    shared = SharedDir(tmp_path / "spool", PurePosixPath("/srv/cunxiang/main/spool/cunxiang"))
    assert shared.to_host("/srv/cunxiang/main/spool/cunxiang/cx_x.wav") == tmp_path / "spool" / "cx_x.wav"
    assert shared.to_asterisk(tmp_path / "spool" / "a.wav") == PurePosixPath("/srv/cunxiang/main/spool/cunxiang/a.wav")
    for escape in ("/srv/cunxiang/main/spool/cunxiang/../../etc/manager.conf", "/etc/passwd"):
        with pytest.raises(ValueError):
            shared.to_host(escape)


def test_a_caller_whose_number_is_withheld_is_never_promised_a_callback() -> None:
    dialplan = render()["extensions.conf"]
    assert 'Set(CX_WITHHELD=${IF($["${CALLERID(pres):0:6}" = "prohib" | "${CALLERID(num)}" = ""' in dialplan
    lines = dialplan.splitlines()
    promises = [
        index
        for index, line in enumerate(lines)
        if re.search(r"/(will_call_back|nothing_heard|operator_busy|number_by_callback)\b(?!_)", line)
    ]
    assert len(promises) == 4
    for index in promises:
        line = lines[index]
        # Either the promise is the other branch of a withheld test, or a withheld caller went elsewhere first.
        branch = 'ExecIf($["${CX_WITHHELD}" = "1"]?Playback(' in line
        went_elsewhere = 'GotoIf($["${CX_WITHHELD}" = "1"]?unreachable_withheld)' in lines[index - 1]
        assert branch or went_elsewhere, line
