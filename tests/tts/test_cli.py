"""The speech commands, run as a user runs them: `python -m cli.main …` in a fresh process with a temp data dir."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.speech import ebur128, ffprobe
from tts.normalize import normalize

# Each test runs `cunxiang` as a process (a second or two of start-up each).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTICES = REPO / "tests" / "fixtures" / "notices.json"
ID_TEXT = "李某某，身份证号150125195803121235，家庭人口1人。"


def cunxiang(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CUNXIANG_")}
    # espeak only: the tests must not depend on whether this machine reaches Microsoft.
    env.update({"CUNXIANG_DATA_DIR": str(tmp_path / "data"), "CUNXIANG_TTS_ENGINES": "espeak"})
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cunxiang: ")
    return lines[0]


def test_tts_normalize_prints_the_spoken_form(tmp_path: Path) -> None:
    text = "请于11月30日前缴费400元，电话0471-1234567（工作日8:30-17:30）。"
    result = cunxiang(tmp_path, "tts", "normalize", text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == normalize(text)
    assert "幺二三四五六七" in result.stdout


@pytest.mark.parametrize(
    ("text", "named"),
    [("！！！", "没有可以读出来的文字"), ("明天开会ᠮᠣᠩᠭᠣᠯ", "第5个字符“ᠮ”是蒙古文")],
    ids=["punctuation-only", "mongolian"],
)
def test_tts_normalize_refuses_unspeakable_text_in_chinese(tmp_path: Path, text: str, named: str) -> None:
    line = one_line_error(cunxiang(tmp_path, "tts", "normalize", text))
    assert named in line


def test_tts_normalize_says_a_masked_id_was_hidden(tmp_path: Path) -> None:
    result = cunxiang(tmp_path, "tts", "normalize", "李某某，身份证号150125********1235。")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "李某某，身份证号已隐去。"


def test_tts_check_fails_on_an_id_number_and_shows_only_the_masked_form(tmp_path: Path) -> None:
    result = cunxiang(tmp_path, "tts", "check", ID_TEXT)
    assert result.returncode == 1
    assert "身份证号" in result.stdout and "不能播" in result.stdout
    assert "150125********1235" in result.stdout
    assert "150125195803121235" not in result.stdout


def test_tts_check_passes_clean_text_and_only_warns_about_a_mobile_number(tmp_path: Path) -> None:
    clean = cunxiang(tmp_path, "tts", "check", "发现火情请拨打12119。")
    assert clean.returncode == 0 and "未发现" in clean.stdout
    mobile = cunxiang(tmp_path, "tts", "check", "代办电话13800001111。")
    assert mobile.returncode == 0
    assert "提醒" in mobile.stdout and "138****1111" in mobile.stdout


def test_render_text_writes_an_mp3_and_reports_it(tmp_path: Path, speech_programs: None) -> None:
    out = tmp_path / "out" / "notice.mp3"
    result = cunxiang(
        tmp_path, "render", "--text", "各位村民请注意，明天上午开会。", "--repeat", "2", "--out", str(out)
    )

    assert result.returncode == 0, result.stderr
    probe = ffprobe(out)
    assert (probe.codec, probe.sample_rate) == ("mp3", 24000)
    assert abs(ebur128(out).integrated_lufs - -16.0) <= 1.0
    report = re.fullmatch(
        r"(.+): ([\d.]+) s, (-?[\d.]+) LUFS, true peak (-?[\d.]+) dBTP, engine espeak \(cmn-latn-pinyin\)",
        result.stdout.strip(),
    )
    assert report is not None, result.stdout
    assert report[1] == str(out)
    # ffprobe's MP3 duration counts the encoder delay (~56 ms at 24 kHz); the report is rounded to 0.1 s.
    assert float(report[2]) == pytest.approx(probe.duration_s, abs=0.15)
    assert float(report[3]) == pytest.approx(ebur128(out).integrated_lufs, abs=0.3)
    assert float(report[4]) <= -1.5


def test_render_picks_the_asterisk_profile_for_a_wav_and_reuses_the_cache(
    tmp_path: Path, speech_programs: None
) -> None:
    out = tmp_path / "prompt.wav"
    first = cunxiang(tmp_path, "render", "--text", "请注意。", "--repeat", "1", "--no-chime", "--out", str(out))
    second = cunxiang(tmp_path, "render", "--text", "请注意。", "--repeat", "1", "--no-chime", "--out", str(out))

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    probe = ffprobe(out)
    assert (probe.codec, probe.sample_rate, probe.channels) == ("pcm_s16le", 8000, 1)
    assert "from cache" in second.stdout and "from cache" not in first.stdout


def test_render_a_notice_file_to_the_rtp_profile(tmp_path: Path, speech_programs: None) -> None:
    notice = tmp_path / "notice.json"
    notice.write_text(json.dumps({"kind": "emergency", "title": "紧急通知", "body": "今晚有大风，请关好门窗。"}))
    out = tmp_path / "notice.ulaw"
    result = cunxiang(
        tmp_path, "render", "--notice", str(notice), "--profile", "rtp", "--repeat", "1", "--out", str(out)
    )

    assert result.returncode == 0, result.stderr
    probe = ffprobe(out, "-f", "mulaw", "-ar", "8000", "-ac", "1")
    assert (probe.codec, probe.sample_rate) == ("pcm_mulaw", 8000)


def test_render_refuses_a_resident_id_unless_asked_to_mask_it(tmp_path: Path, speech_programs: None) -> None:
    out = tmp_path / "id.mp3"
    line = one_line_error(cunxiang(tmp_path, "render", "--text", ID_TEXT, "--out", str(out)))
    assert "身份证号" in line and "--mask" in line
    assert not out.exists()

    masked = cunxiang(tmp_path, "render", "--text", ID_TEXT, "--mask", "--repeat", "1", "--out", str(out))
    assert masked.returncode == 0, masked.stderr
    assert out.exists()


@pytest.mark.parametrize(
    ("args", "settings", "named"),
    [
        (["--rate", "10%"], {}, "10%"),
        (["--voice", "zh-CN-NobodyNeural"], {}, "zh-CN-NobodyNeural"),
        ([], {"CUNXIANG_AUDIO_FFMPEG_BINARY": "/nonexistent/ffmpeg"}, "apt-get install ffmpeg"),
        ([], {"CUNXIANG_TTS_ESPEAK_BINARY": "/nonexistent/espeak-ng"}, "apt-get install espeak-ng"),
    ],
    ids=["rate-without-sign", "unknown-voice", "missing-ffmpeg", "missing-espeak-ng"],
)
def test_render_errors_are_one_line_and_leave_no_file(
    tmp_path: Path, speech_programs: None, args: list[str], settings: dict[str, str], named: str
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cunxiang(tmp_path, "render", "--text", "请注意。", *args, "--out", str(out_dir / "x.mp3"), **settings)

    assert named in one_line_error(result)
    assert list(out_dir.iterdir()) == []
    staging = tmp_path / "data" / "audio" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_render_without_an_output_is_a_one_line_error(tmp_path: Path) -> None:
    assert "--out" in one_line_error(cunxiang(tmp_path, "render", "--text", "请注意。"))


def test_a_bad_setting_is_named(tmp_path: Path) -> None:
    line = one_line_error(cunxiang(tmp_path, "tts", "normalize", "你好", CUNXIANG_TTS_EDGE_RATE="10%"))
    assert "CUNXIANG_TTS_EDGE_RATE" in line


def test_batch_renders_the_sample_notices_and_reports_the_one_it_refused(tmp_path: Path, speech_programs: None) -> None:
    out_dir = tmp_path / "samples"
    result = cunxiang(
        tmp_path, "render", "--batch", str(NOTICES), "--out-dir", str(out_dir), "--profile", "asterisk", "--repeat", "1"
    )

    # The second sample lists a resident ID: refused (one line naming it), the other five rendered.
    assert result.returncode == 1
    assert "notice 2" in result.stderr and "身份证号" in result.stderr
    assert "[6/6]" in result.stderr  # progress: one line per notice when stderr is not a terminal
    files = sorted(path.name for path in out_dir.iterdir())
    assert files == [
        "001-disclosure_finance.wav",
        "003-disclosure_party.wav",
        "004-civility.wav",
        "005-emergency.wav",
        "006-service.wav",
    ]
    for name in files:
        probe = ffprobe(out_dir / name)
        assert probe.sample_rate == 8000 and probe.duration_s > 20
    reports = result.stdout.strip().splitlines()
    assert len(reports) == 5 and all("engine espeak" in line for line in reports)
