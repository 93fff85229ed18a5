"""Every sentence the hotline says, in plain Mandarin, in one place — and how it gets into Asterisk.

Written for old villagers on old handsets: short sentences; the most used
choice first; what to do said *before* the key; that one may simply speak;
nothing ever ends a call on silence; numbers read digit by digit with 1 as 幺;
the case number said twice; and nothing promised that will not happen (a
caller whose number is withheld is never told "we will call you back").
``{county}`` and ``{record_warning}`` (the seconds left when a long message is
warned, in Chinese numerals) are filled from the settings.

:class:`PromptInstaller` renders them through our speech pipeline (the TTS
engine chain, loudness normalisation, the ``asterisk`` profile: 8 kHz mono
16-bit WAV) into the directory Asterisk plays them from by absolute path, and
keeps a manifest of what each file was made from (text, voice, engine order,
pipeline version). A prompt is rendered again only when that changes, its
file is missing, or a fallback engine spoke it while the preferred one works
again — so ``cunxiang prompts install`` is cheap to run at every start.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common.clock import Clock
from common.errors import CunxiangError
from common.health import ComponentHealth
from common.tasks import BackgroundTasks
from tts.audio import AudioTools, Pcm, Profile
from tts.chain import SPEECH_PIPELINE_VERSION, SpeechChain
from tts.engines import VoiceRequest
from tts.normalize import normalize

log = logging.getLogger(__name__)

# Bump when the way prompts are produced changes (padding, loudness), to re-render them all.
PROMPT_FORMAT: Final = "prompt-1"
MANIFEST: Final = "manifest.json"
LOUDNESS_LUFS: Final = -16.0
TRUE_PEAK_DBTP: Final = -2.0

# id -> (when it is played, what it says). The dialplan plays <prompts_dir>/<id>.
PROMPTS: Final[Mapping[str, tuple[str, str]]] = {
    "welcome": ("call answered", "您好，这里是{county}群众诉求热线。"),
    "menu": (
        "after the welcome; again on *",
        "反映问题或者求助，请按1。查询办理进度，请按2。举报干部违纪违法，请按3。找工作人员，请按0。"
        "再听一遍，请按星号键。不方便按键的，不用挂机，等一会儿直接说话就行。",
    ),
    "wrong_key": ("a key the menu does not know", "您按的键不对。请再听一遍。"),
    "speak_after_tone": (
        "key 1, or no key at all",
        "请在听到“嘀”的一声以后，说出您的问题，还有您是哪个村的、怎么称呼。说完了，直接挂机就可以。",
    ),
    "report_after_tone": (
        "key 3 (sealed)",
        "您的举报我们会严格保密。请在听到“嘀”的一声以后，说出您要举报的事情。说完了，直接挂机就可以。",
    ),
    "record_warning": (
        "after a short tone, ivr.record_warning_s before the longest message ends",
        "请在{record_warning}秒内说完。",
    ),
    "record_cut": (
        "the message reached ivr.record_max_s: what came after was not recorded",
        "留言时间到了，录音到这里为止，后面的话没有录上。还有要说的，请再打一次这个热线。",
    ),
    "not_heard": ("the message had no speech in it", "没有听到您说话。请在听到“嘀”的一声以后，再说一遍。"),
    "nothing_heard": (
        "still nothing said: kept as a missed call",
        "还是没有听到您说话。我们会给您回电话。谢谢您，再见。",
    ),
    "nothing_heard_withheld": (
        "still nothing said, from a withheld number (no callback is possible)",
        "还是没有听到您说话。有事的话，请您再打这个热线。谢谢您，再见。",
    ),
    "recorded": ("after the message", "您反映的问题已经记下了。"),
    "number_by_callback": (
        "the service could not give a case number: it is flagged, someone calls to tell it",
        "受理编号现在没法告诉您，我们会打电话告诉您。",
    ),
    "no_number_no_callback": (
        "the service could not give a case number, and the caller's number is withheld",
        "受理编号现在没法告诉您。您的电话没有显示号码，我们没法给您回电话。"
        "请您过一会儿再打这个热线，按0请工作人员帮您查。谢谢您，再见。",
    ),
    "case_number_is": ("before the case number", "您的受理编号是："),
    "say_again": ("between the two readings", "我再说一遍："),
    "keep_number": ("after the case number", "查询进度的时候要用到这个编号，请您记好。"),
    "pin_is": (
        "withheld numbers only, before the PIN",
        "您的电话没有显示号码，查询的时候还要用到查询密码。您的查询密码是：",
    ),
    "will_call_back": ("end of a message call", "我们会尽快办理，并给您回电话。谢谢您，再见。"),
    "will_not_call_back": (
        "end of a message call from a withheld number (no callback is possible)",
        "我们会尽快办理。您的电话没有显示号码，我们没法给您回电话，请用受理编号和查询密码打这个热线查询。"
        "谢谢您，再见。",
    ),
    "enter_number": ("key 2", "请输入您的受理编号，输完以后按井号键。找工作人员，请按0。"),
    "number_not_found": ("a number that is not a case", "没有找到这个编号。请您再输一遍，输完以后按井号键。"),
    "number_not_found_final": (
        "the last try failed",
        "还是没有找到这个编号。要工作人员帮您查，请按0；不用的话，直接挂机就可以。",
    ),
    "not_yours": (
        "the case was filed from another phone",
        "为了保护个人信息，请用反映问题时的那部电话来查询。如果您有查询密码，请现在输入，输完以后按井号键。"
        "找工作人员，请按0。",
    ),
    "pin_wrong": ("a wrong PIN", "查询密码不对。请您再输一遍，输完以后按井号键。"),
    "pin_wrong_final": (
        "the last PIN try failed",
        "查询密码还是不对。要工作人员帮您查，请按0；不用的话，直接挂机就可以。",
    ),
    "status_new": ("status read-back: 待受理", "您反映的问题我们已经收到，正在等待受理。"),
    "status_accepted": ("status read-back: 已受理", "您反映的问题已经受理，正在安排办理。"),
    "status_rejected": ("status read-back: 不予受理", "您反映的问题不在受理范围内，工作人员会给您打电话说明原因。"),
    "status_in_progress": ("status read-back: 办理中", "您反映的问题正在办理。"),
    "status_resolved": ("status read-back: 已办结", "您反映的问题已经办理完毕。"),
    "status_followed_up": ("status read-back: 已回访", "您反映的问题已经办理完毕，我们也已经回访过了。"),
    "status_closed": ("status read-back: 已销号", "您反映的问题已经办结。"),
    "status_bye": ("after a status", "还有别的事，请按0找工作人员；没有的话，直接挂机就可以。谢谢您。"),
    "status_confidential": (
        "a sealed case's number",
        "这个编号的事项按规定保密，电话里不能查询。需要了解情况，请按0找工作人员。",
    ),
    "status_unavailable": ("the service could not answer", "系统暂时查不到，请您过一会儿再打。找工作人员，请按0。"),
    "transferring": ("key 0", "正在为您转接工作人员，请稍等。"),
    "operator_busy": (
        "nobody answered: leave a message",
        "工作人员正在忙。请在听到“嘀”的一声以后留言，我们会给您回电话。",
    ),
    "operator_busy_withheld": (
        "nobody answered a withheld number: leave a message (no callback promised)",
        "工作人员正在忙。请在听到“嘀”的一声以后留言。",
    ),
    "goodbye": ("end of a transferred call", "谢谢您的来电，再见。"),
    "survey_hello": ("follow-up call answered", "您好，这里是{county}群众诉求热线，给您做个回访。"),
    "survey_question": ("the survey's question", "满意请按1，基本满意请按2，不满意请按3。"),
    "survey_again": ("no key: the question again", "没有听到您按键。"),
    "survey_thanks": ("after a key", "谢谢您的评价，再见。"),
    "survey_no_answer": ("no key after all tries", "没有听到您的评价。我们以后再给您打电话。谢谢您，再见。"),
    # -- the phone-broadcast line (手机喊话; hotline/phonecast_line.py). Never a word of the hotline to a
    # stranger, never a hint that the number is for cadres; every ending says whether anything was broadcast.
    "pc_refusal": (
        "phone broadcast: a number nobody registered (or no desk)",
        "您好，这个号码不能为您提供服务。谢谢，再见。",
    ),
    "pc_enter_pin": ("phone broadcast: a registered number", "您好。请输入喊话密码，输完以后按井号键。"),
    "pc_pin_wrong": ("phone broadcast: a wrong PIN", "密码不对。请再输一遍，输完以后按井号键。"),
    "pc_pin_wrong_final": (
        "phone broadcast: the third wrong PIN in a call",
        "密码还是不对，这次不能喊话。谢谢，再见。",
    ),
    "pc_locked": (
        "phone broadcast: phone broadcasting is locked for this cadre",
        "您的电话喊话已经暂停使用，请联系县里的管理员。谢谢，再见。",
    ),
    "pc_no_keys": ("phone broadcast: a question heard no key", "没有听到您按键。"),
    "pc_no_keys_bye": (
        "phone broadcast: still no key: the call ends, nothing broadcast",
        "还是没有听到您按键，这次没有喊话。谢谢，再见。",
    ),
    "pc_target_menu": (
        "phone broadcast: where to broadcast",
        "给本村喊话，请按1。给乡镇喊话，请按2。按喊话编号选播放区，请按3。再听一遍，请按星号键。",
    ),
    "pc_choose_village": ("phone broadcast: before the numbered list of villages", "您可以给下面这几个村喊话。"),
    "pc_choose_township": ("phone broadcast: before the numbered list of townships", "您可以给下面这几个乡镇喊话。"),
    "pc_no_village": ("phone broadcast: key 1 with no village in scope", "您没有可以喊话的村。"),
    "pc_no_township": ("phone broadcast: key 2 with no township in scope", "您没有可以喊话的乡镇。"),
    "pc_enter_zone_code": ("phone broadcast: key 3", "请输入播放区的喊话编号，输完以后按井号键。"),
    "pc_zone_not_found": (
        "phone broadcast: a zone code that is not one, or not in scope",
        "没有找到这个喊话编号，或者您不能给它喊话。",
    ),
    "pc_target_is": ("phone broadcast: before the chosen place is read back", "您选的是："),
    "pc_target_silent": (
        "phone broadcast: the chosen place has no loudspeaker today",
        "这里现在没有能用的喇叭，请选别的地方。",
    ),
    "pc_speak_after_tone": (
        "phone broadcast: before the recording",
        "请在听到“嘀”的一声以后说话，最长{phonecast_max}。说完了，请按井号键。",
    ),
    "pc_record_cut": ("phone broadcast: the message reached its longest", "录音时间到了，录音到这里为止。"),
    "pc_not_heard": (
        "phone broadcast: the recording had no speech",
        "没有听到您说话。请在听到“嘀”的一声以后，再说一遍。",
    ),
    "pc_nothing_heard": (
        "phone broadcast: still no speech: the call ends, nothing broadcast",
        "还是没有听到您说话，这次没有喊话。谢谢，再见。",
    ),
    "pc_you_said": ("phone broadcast: before the recording is played back", "下面是您的录音。"),
    "pc_review_menu": (
        "phone broadcast: after the recording was played back",
        "现在播出，请按1。重新录，请按2。定时播出，请按3。再听一遍录音，请按星号键。",
    ),
    "pc_enter_time": (
        "phone broadcast: key 3 after the recording",
        "请输入播出的时间，四位数字，几点在前，几分在后。比如下午两点半，请按一四三零。",
    ),
    "pc_time_invalid": ("phone broadcast: four digits that are no time of day", "这个时间不对。"),
    "pc_please_wait": ("phone broadcast: while the desk starts the broadcast", "正在安排播出，请稍等。"),
    "pc_started": ("phone broadcast: started (said when the number cannot be spoken)", "已开始播出。"),
    "pc_partly_unanswered": (
        "phone broadcast: started, some speakers did not answer (said when the numbers cannot be spoken)",
        "已开始播出，部分喇叭未应答。",
    ),
    "pc_queued": ("phone broadcast: queued behind another broadcast", "已排队，前面还有广播，轮到以后会自动播出。"),
    "pc_scheduled": (
        "phone broadcast: scheduled (said when the time cannot be spoken)",
        "已安排好定时播出。",
    ),
    "pc_refused_quiet_hours": ("phone broadcast refused: quiet hours", "现在是静音时段，不能喊话。这次没有播出。"),
    "pc_refused_too_long": ("phone broadcast refused: the recording is too long", "录音太长了，这次没有播出。"),
    "pc_refused_no_speakers": (
        "phone broadcast refused: no loudspeaker to play on",
        "选的地方现在没有能用的喇叭，这次没有播出。",
    ),
    "pc_refused_not_in_scope": (
        "phone broadcast refused: not in the cadre's scope",
        "您不能给这个地方喊话，这次没有播出。",
    ),
    "pc_refused_locked": ("phone broadcast refused: locked meanwhile", "您的电话喊话已经暂停使用，这次没有播出。"),
    "pc_refused_disk_full": (
        "phone broadcast refused: no room to keep the recording",
        "系统存储空间不够，这次没有播出。请告诉县里的管理员。",
    ),
    "pc_refused_failed": (
        "phone broadcast refused: it could not start (also any reason the line does not know)",
        "广播未能开始，请过一会儿再试。",
    ),
    "pc_outcome_unknown": (
        "phone broadcast: the desk failed while submitting: nobody knows whether it plays",
        "系统出了问题，没法确认这次喊话有没有播出。请联系县里的管理员。",
    ),
    "pc_unavailable": (
        "phone broadcast: the service could not be reached",
        "系统暂时不能使用，请您过一会儿再打。谢谢，再见。",
    ),
    # 实时喊话 (issue 18): the mode after the place, and what a live call hears.
    "pc_mode_menu": (
        "phone broadcast: recorded or live, once the place is chosen",
        "先录音、听过再播，请按1。现在就对着喇叭直接讲话，请按2。再听一遍，请按星号键。",
    ),
    "pc_live_connecting": ("phone broadcast live: while the speakers are connected", "正在接通喇叭，请稍等。"),
    "pc_live_on_air": ("phone broadcast live: on air (said when the number cannot be spoken)", "喇叭已经接通。"),
    "pc_live_after": (
        "phone broadcast live: some targets are 4G terminals",
        "4G 终端不能实时播放，喊话结束以后会自动播放您的录音。",
    ),
    "pc_live_speak": (
        "phone broadcast live: just before the chime",
        "听到提示音以后请讲话，喇叭里会同时播出。讲完请按井号键，或者直接挂机。",
    ),
    "pc_live_busy": (
        "phone broadcast live: a target zone is live with another call",
        "该区域正在喊话。改为录音喊话，请按1。不喊了，请按2。",
    ),
    "pc_live_emergency_refused": (
        "phone broadcast live: an emergency holds a target zone: a live call never starts over one",
        "该区域正在播出紧急广播，现在不能实时喊话。请等紧急广播结束以后再打。谢谢，再见。",
    ),
    "pc_live_ended": ("phone broadcast live: the caller pressed #", "喊话结束。"),
    "pc_live_limit": ("phone broadcast live: the hard limit was reached", "喊话时间到了，喊话结束。"),
    "pc_live_emergency": ("phone broadcast live: an emergency took the zones", "紧急广播插播，喊话结束。"),
    "pc_live_failed": (
        "phone broadcast live: Asterisk or the link failed during the call",
        "线路出了问题，喊话中断了。请过一会儿再试。",
    ),
    "pc_goodbye": ("phone broadcast: end of the call", "谢谢，再见。"),
    **{
        f"digit_{digit}": ("one digit of a number read back", word)
        for digit, word in zip("0123456789", "零幺二三四五六七八九", strict=True)
    },
}

# The sentence a simulated villager says in the dial test (拨测), unless given a recording.
DIAL_TEST_SENTENCE: Final = "我是测试村的村民。村里的路灯坏了好几天了，晚上出门看不见路，麻烦你们派人来修一修。"


@dataclass(frozen=True)
class Prompt:
    id: str
    when: str
    text: str


def chinese_number(value: int) -> str:
    """1–99 as spoken: 十, 十五, 三十, 四十五 (the prompts say seconds this way, never as digits)."""
    if not 0 < value < 100:
        raise ValueError(f"{value} is not between 1 and 99")
    digits = "零一二三四五六七八九"
    tens, ones = divmod(value, 10)
    if tens == 0:
        return digits[ones]
    return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")


def spoken_duration(seconds: int) -> str:
    """A length of time as said: 三分钟, 两分钟三十秒, 四十五秒 (up to 99 minutes)."""
    minutes, rest = divmod(seconds, 60)
    if seconds <= 0 or minutes >= 100:
        raise ValueError(f"{seconds} s is not a length the prompts say")

    def amount(value: int) -> str:
        return "两" if value == 2 else chinese_number(value)

    return (f"{amount(minutes)}分钟" if minutes else "") + (f"{amount(rest)}秒" if rest else "")


def catalog(county: str, *, record_warning_s: int = 10, phonecast_max_s: int = 180) -> list[Prompt]:
    """Every prompt with ``{county}``, ``{record_warning}`` and ``{phonecast_max}`` filled in."""
    values = {
        "county": county,
        "record_warning": chinese_number(record_warning_s),
        "phonecast_max": spoken_duration(phonecast_max_s),
    }
    return [Prompt(prompt_id, when, text.format(**values)) for prompt_id, (when, text) in PROMPTS.items()]


@dataclass(frozen=True)
class Rendered:
    duration_s: float
    engine: str
    voice: dict[str, str]


class SpeechRenderer:
    """Text → speech (engine chain) → loudness-normalised 8 kHz WAV with silence around it."""

    def __init__(self, chain: SpeechChain, tools: AudioTools, *, voice: VoiceRequest) -> None:
        self.chain = chain
        self.tools = tools
        self.voice = voice

    def identity(self) -> dict[str, Any]:
        """What changes the audio besides the text: part of every prompt's hash."""
        return {
            "engines": self.chain.engine_names,
            "voice": self.voice.voice,
            "rate": self.voice.rate,
            "pipeline": SPEECH_PIPELINE_VERSION,
            "format": PROMPT_FORMAT,
        }

    async def render(self, text: str, dest: Path, *, lead_in_ms: int = 0, tail_ms: int = 0) -> Rendered:
        spoken = await self.chain.speak(normalize(text), self.voice)
        measured = await self.tools.decode(spoken.entry.path)
        pcm = measured.pcm
        if not measured.loudness.silent:
            pcm = (
                await self.tools.normalize_loudness(measured, target_lufs=LOUDNESS_LUFS, limit_dbtp=TRUE_PEAK_DBTP)
            ).pcm
        padded = Pcm(
            _silence(pcm.sample_rate, lead_in_ms) + pcm.data + _silence(pcm.sample_rate, tail_ms), pcm.sample_rate
        )
        temporary = await asyncio.to_thread(_temporary_beside, dest)
        try:
            await self.tools.encode(padded, {Profile.ASTERISK: temporary})
            await asyncio.to_thread(temporary.replace, dest)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Rendered(round(padded.duration_s, 3), spoken.engine, spoken.voice.as_dict())


def _temporary_beside(dest: Path) -> Path:
    """An empty file in dest's directory (made if missing), to write and then rename over dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".wav", dir=dest.parent)
    os.close(fd)
    return Path(temporary)


def _silence(rate: int, milliseconds: int) -> bytes:
    return b"\0\0" * (rate * milliseconds // 1000)


@dataclass
class InstallReport:
    rendered: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rendered": self.rendered, "kept": len(self.kept), "failed": self.failed}


class PromptInstaller:
    """Keeps ``target`` (where Asterisk plays prompts from) in step with :data:`PROMPTS`."""

    name = "prompts"

    def __init__(
        self,
        renderer: SpeechRenderer,
        target: Path,
        *,
        county: str,
        clock: Clock,
        record_warning_s: int = 10,
        phonecast_max_s: int = 180,
        digit_pause_ms: int = 250,
        lead_in_ms: int = 300,
        give_to_asterisk: Callable[[Path], None] | None = None,
        parallel: int = 2,
    ) -> None:
        self.renderer = renderer
        self.target = target
        self.county = county
        self.record_warning_s = record_warning_s
        self.phonecast_max_s = phonecast_max_s
        self._clock = clock
        self._digit_pause_ms = digit_pause_ms
        self._lead_in_ms = lead_in_ms
        self._give = give_to_asterisk
        self._parallel = parallel
        self._tasks: BackgroundTasks | None = None
        self._lock = asyncio.Lock()
        self.health = ComponentHealth("prompts", status="standby", detail="the active worker installs them")

    def _padding(self, prompt_id: str) -> tuple[int, int]:
        if prompt_id.startswith("digit_"):
            return 0, self._digit_pause_ms
        return self._lead_in_ms, 0

    def fingerprint(self, prompt: Prompt) -> str:
        lead, tail = self._padding(prompt.id)
        canonical = json.dumps(
            {"text": prompt.text, "lead_ms": lead, "tail_ms": tail, **self.renderer.identity()},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def manifest(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.target / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        path = self.target / MANIFEST
        temporary = path.with_name(f".{MANIFEST}.part")
        temporary.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
        if self._give is not None:
            self._give(path)

    def stale(self, prompt: Prompt, entry: Mapping[str, Any] | None) -> bool:
        if entry is None or entry.get("hash") != self.fingerprint(prompt):
            return True
        if not (self.target / f"{prompt.id}.wav").exists():
            return True
        preferred = self.renderer.chain.engine_names[0]
        # Spoken by a fallback engine while the preferred one is back: say it again, properly. "Back"
        # means it has answered: on a machine without internet every start would redo them all.
        return entry.get("engine") != preferred and self.renderer.chain.known_working(preferred)

    async def install(self, *, force: bool = False) -> InstallReport:
        async with self._lock:
            report = InstallReport()
            self.target.mkdir(parents=True, exist_ok=True)
            manifest = self.manifest()
            prompts = catalog(self.county, record_warning_s=self.record_warning_s, phonecast_max_s=self.phonecast_max_s)
            todo = [prompt for prompt in prompts if force or self.stale(prompt, manifest.get(prompt.id))]
            report.kept = [prompt.id for prompt in prompts if prompt not in todo]
            gate = asyncio.Semaphore(self._parallel)

            async def one(prompt: Prompt) -> None:
                async with gate:
                    lead, tail = self._padding(prompt.id)
                    dest = self.target / f"{prompt.id}.wav"
                    try:
                        rendered = await self.renderer.render(prompt.text, dest, lead_in_ms=lead, tail_ms=tail)
                    except (CunxiangError, OSError) as exc:
                        log.error("prompt %s not rendered: %s", prompt.id, exc)
                        report.failed[prompt.id] = str(exc)
                        return
                    if self._give is not None:
                        self._give(dest)
                    manifest[prompt.id] = {
                        "hash": self.fingerprint(prompt),
                        "text": prompt.text,
                        "engine": rendered.engine,
                        "voice": rendered.voice,
                        "duration_s": rendered.duration_s,
                        "rendered_at": self._clock.now().isoformat(timespec="seconds"),
                    }
                    report.rendered.append(prompt.id)

            await asyncio.gather(*(one(prompt) for prompt in todo))
            for unknown in set(manifest) - {prompt.id for prompt in prompts}:
                manifest.pop(unknown)
            self._write_manifest(manifest)
            if report.failed:
                self.health.set("degraded", f"{len(report.failed)} prompts failed", at=self._clock.now())
            else:
                self.health.set("ok", f"{len(prompts)} prompts installed", at=self._clock.now())
            self.health.extra["rendered_last"] = len(report.rendered)
            return report

    # -- as a worker service: bring prompts up to date in the background at start ----------------------

    async def start(self) -> None:
        if self._tasks is None:
            self._tasks = BackgroundTasks("prompts")
            self._tasks.spawn(self._install_quietly(), "install")

    async def _install_quietly(self) -> None:
        # Knowing first whether the preferred engine answers (a probe is bounded by its timeout)
        # decides whether prompts a fallback engine spoke are redone now or kept.
        await self.renderer.chain.startup_probe_finished()
        report = await self.install()
        if report.rendered or report.failed:
            log.info("prompts: %s", report.as_dict())

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None


__all__ = [
    "DIAL_TEST_SENTENCE",
    "PROMPTS",
    "Prompt",
    "PromptInstaller",
    "SpeechRenderer",
    "catalog",
    "chinese_number",
    "spoken_duration",
]
