"""The one typed settings object, read once at start-up.

Sources, later ones winning: built-in defaults, an optional TOML file
(``--config FILE`` or ``CUNXIANG_CONFIG``), environment variables with the
prefix ``CUNXIANG_``. A section's field is ``CUNXIANG_<SECTION>_<FIELD>`` in
the environment (``CUNXIANG_DATABASE_URL``, ``CUNXIANG_SERVER_PORT``) and
``[section] field = …`` in TOML.

Only ``cli.main`` calls :func:`load_settings`; everything below it is handed
the values it needs. A bad value raises :class:`SettingsError` whose message
is one line naming the setting and what is wrong.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

ENV_PREFIX = "CUNXIANG_"


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line for the operator."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # The address people open; printed at start and used in links. Empty: derived from host/port.
    public_url: str = ""
    # Set when the service is behind HTTPS, so session cookies carry the Secure flag.
    cookie_secure: bool = False
    # A session ends this long after sign-in, or after this long unused, whichever comes first.
    session_max_age_s: int = Field(12 * 3600, ge=60)
    session_idle_s: int = Field(4 * 3600, ge=60)
    # Reverse proxies (addresses or networks, e.g. 127.0.0.1 or 10.0.0.0/24) whose X-Forwarded-For is
    # believed: behind them the login limiter and the audit log see the real client. Empty: nobody's.
    # In the environment: CUNXIANG_SERVER_TRUSTED_PROXIES=127.0.0.1,::1
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    # Largest JSON body accepted by the API, and largest form post; only upload routes take more
    # (max_upload_bytes, and their own limit such as broadcast.recording_max_bytes).
    max_json_bytes: int = Field(256 * 1024, ge=1024)
    max_form_bytes: int = Field(256 * 1024, ge=1024)
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    shutdown_timeout_s: float = Field(10.0, gt=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value


class DatabaseSettings(_Section):
    # Empty means SQLite at <data_dir>/cunxiang.db.
    url: str = ""
    busy_timeout_ms: int = Field(5000, ge=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    # Connections kept open, and how many more may open for a moment (closed when returned): twenty calls
    # hanging up together want twenty at once (see storage.db.create_engine).
    pool_size: int = Field(20, ge=1)
    pool_overflow: int = Field(20, ge=0)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class SecuritySettings(_Section):
    # Empty: a key is generated once into <data_dir>/session.key (mode 0600).
    session_key: str = ""
    # Argon2id cost. The defaults follow RFC 9106's second recommended option.
    password_time_cost: int = Field(3, ge=1)
    password_memory_kib: int = Field(64 * 1024, ge=8)
    password_parallelism: int = Field(2, ge=1)
    password_min_length: int = Field(10, ge=8)
    # Failed logins before each further attempt must wait; the wait doubles up to the cap.
    # Counted per (client address, name); per name across addresses (holding back only addresses that
    # failed themselves); and per address across names. Failures older than login_window_s are forgotten.
    login_free_attempts: int = Field(3, ge=1)
    login_name_free_attempts: int = Field(10, ge=1)
    login_address_free_attempts: int = Field(10, ge=1)
    login_base_delay_s: float = Field(1.0, ge=0)
    login_max_delay_s: float = Field(300.0, ge=0)
    login_window_s: float = Field(900.0, gt=0)


class WorkerSettings(_Section):
    # How often a standby process tries to become the active worker.
    election_interval_s: float = Field(5.0, gt=0)


EngineName = Literal["edge", "espeak"]
# edge-tts takes prosody as signed values; "10%" without a sign is refused by the service.
_SIGNED_PERCENT = re.compile(r"[+-]\d{1,3}%")
_SIGNED_HERTZ = re.compile(r"[+-]\d{1,3}Hz")


class TtsSettings(_Section):
    # Engines tried in this order; one that fails is skipped for breaker_open_s and probed in the background.
    # In the environment: CUNXIANG_TTS_ENGINES=espeak or =edge,espeak.
    engines: Annotated[tuple[EngineName, ...], NoDecode] = ("edge", "espeak")
    # Longest notice text accepted, in characters.
    max_chars: int = Field(5000, ge=1, le=100_000)
    # Longest a single engine call may take, connection included.
    synthesis_timeout_s: float = Field(180.0, gt=0)
    # After an engine fails it is skipped this long, then probed again.
    breaker_open_s: float = Field(300.0, gt=0)
    # How often the background prober looks at skipped engines.
    probe_interval_s: float = Field(30.0, gt=0)
    probe_timeout_s: float = Field(20.0, gt=0)

    edge_voice: str = "zh-CN-XiaoxiaoNeural"
    # Slower than normal by default: the listeners are old and stand far from the horn.
    edge_rate: str = "-15%"
    edge_volume: str = "+0%"
    edge_pitch: str = "+0Hz"
    # e.g. http://proxy.example:3128; empty: direct (or the usual *_PROXY environment variables).
    edge_proxy: str = ""
    # Whole seconds: edge-tts takes integers here.
    edge_connect_timeout_s: int = Field(5, ge=1)
    edge_receive_timeout_s: int = Field(30, ge=1)
    # Parallel connections to Microsoft's endpoint; around 40 is treated as abuse.
    edge_max_connections: int = Field(3, ge=1, le=10)

    espeak_binary: str = "espeak-ng"
    # `cmn` reads pinyin as English in espeak-ng 1.51; `cmn-latn-pinyin` is the working Mandarin voice.
    espeak_voice: str = "cmn-latn-pinyin"
    # Words per minute as espeak-ng counts them; 150 gives about 180 Chinese characters a minute.
    espeak_speed_wpm: int = Field(150, ge=80, le=450)
    espeak_timeout_s: float = Field(60.0, gt=0)

    @field_validator("edge_rate", "edge_volume")
    @classmethod
    def _signed_percent(cls, value: str) -> str:
        if not _SIGNED_PERCENT.fullmatch(value):
            raise ValueError("must be a signed percentage such as -15% or +10%")
        return value

    @field_validator("edge_pitch")
    @classmethod
    def _signed_hertz(cls, value: str) -> str:
        if not _SIGNED_HERTZ.fullmatch(value):
            raise ValueError("must be signed hertz such as +0Hz or -5Hz")
        return value

    @field_validator("engines", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError("not a JSON list; write e.g. edge,espeak") from exc
        return tuple(part.strip() for part in value.split(",") if part.strip())

    @field_validator("engines")
    @classmethod
    def _some_engine(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one engine (edge, espeak)")
        if len(set(value)) != len(value):
            raise ValueError("an engine is named twice")
        return value


class AudioSettings(_Section):
    # Integrated loudness of every produced item (EBU R128 / ITU-R BS.1770), and the true-peak ceiling.
    loudness_target_lufs: float = Field(-16.0, ge=-40, le=-5)
    true_peak_ceiling_dbtp: float = Field(-1.5, ge=-12, le=0)
    # The limiter aims this far below the ceiling, so MP3 encoding and resampling to 8 kHz stay under it.
    limiter_headroom_db: float = Field(1.0, ge=0, le=6)
    chime: bool = True
    # Silence before the chime: paging speakers and amplifiers swallow the first moments of a call.
    lead_in_ms: int = Field(500, ge=0, le=10_000)
    # Pause between the chime and the first reading.
    chime_gap_ms: int = Field(700, ge=0, le=10_000)
    # Pause between two readings of the message, and before the closing line.
    gap_ms: int = Field(1500, ge=0, le=30_000)
    tail_ms: int = Field(300, ge=0, le=10_000)
    default_repeats: int = Field(2, ge=1, le=10)
    # Rendered audio kept under <data_dir>/audio; what nothing references is evicted first.
    cache_max_mb: int = Field(2048, ge=1)
    ffmpeg_binary: str = "ffmpeg"
    ffprobe_binary: str = "ffprobe"
    # Longest one ffmpeg job may run.
    ffmpeg_timeout_s: float = Field(300.0, gt=0)
    # ffmpeg (rendering) runs this much nicer than the service (0-19): the loop that paces RTP wins the CPU.
    ffmpeg_niceness: int = Field(10, ge=0, le=19)
    # Longest human recording accepted for broadcast.
    max_recording_s: float = Field(900.0, gt=0)
    # The longest broadcast item, whatever makes it (a notice with its repeats, an emergency, an upload; later
    # CAP alerts and phone broadcasts): a text whose reading would pass it is refused before anything is rendered.
    max_item_s: float = Field(1800.0, gt=0)


class BroadcastSettings(_Section):
    # (How often a notice is read within one item when it does not say: audio.default_repeats.)
    # A lower-priority item waits this long for a busy zone, then is recorded as skipped.
    lower_priority_wait_s: float = Field(600.0, ge=0)
    # An item cut off by a higher-priority one is played again once the zone is free.
    requeue_interrupted: bool = True
    # Emergencies render with this engine first (a local engine answers in a second; a cloud may not).
    emergency_engine: EngineName = "espeak"
    # How often 4G terminals ask what to play (told to them in every answer).
    http_poll_interval_s: float = Field(5.0, gt=0, le=300)
    # A terminal not heard from for this long is shown as offline.
    terminal_heartbeat_timeout_s: float = Field(60.0, gt=0)
    # A terminal that has not reported the start of an item this long after it was offered failed it.
    terminal_start_timeout_s: float = Field(30.0, gt=0)
    # After an item's duration, how long to wait for a terminal's "finished" before marking it failed.
    terminal_finish_grace_s: float = Field(30.0, ge=0)
    # Largest uploaded or browser-recorded voice file.
    recording_max_bytes: int = Field(30 * 1024 * 1024, ge=1024)
    # RTP defaults for zones that do not set their own.
    rtp_port: int = Field(5004, ge=1024, le=65535)
    rtp_ttl: int = Field(8, ge=0, le=255)
    # Where RTP may go (speakers, zone groups, the speaker test): multicast only within 239.0.0.0/8, always.
    # Highest TTL a zone may set; unicast to public addresses; ports below 1024.
    rtp_max_ttl: int = Field(8, ge=0, le=255)
    rtp_allow_public_unicast: bool = False
    rtp_allow_low_ports: bool = False
    rtp_packet_ms: Literal[10, 20, 30, 40] = 20
    # Local address multicast leaves from (IP_MULTICAST_IF); empty: the system's choice.
    rtp_multicast_interface: str = ""
    # How long Asterisk may take to answer a paging Originate.
    sip_page_timeout_s: float = Field(30.0, gt=0)
    # Auto-answer header SIP paging sends: generic (Call-Info answer-after=0), polycom, cisco, rfc5373, none.
    sip_auto_answer: Literal["generic", "polycom", "cisco", "rfc5373", "none"] = "generic"
    # A scheduled occurrence is claimed and prepared this long before its instant (the pre-roll: rows written,
    # audio read and packetised, streams built), so that its first packets leave on the instant itself.
    preroll_s: float = Field(2.0, ge=0, le=30)
    # How often the active worker looks for broadcasts requested by another process.
    pending_poll_s: float = Field(1.0, gt=0)
    # How often the dispatcher records that it is alive: after a crash, the next worker takes the last
    # record as the time the service stopped (for the replay window, scheduler.catch_up_grace_s).
    heartbeat_s: float = Field(5.0, gt=0)
    # Program that plays an item on a local sound card (sink speakers "alsa:DEVICE").
    alsa_player: str = "aplay"
    # Longest a speaker test may take end to end.
    speaker_test_timeout_s: float = Field(60.0, gt=0)
    # Which transports may send anything (rtp, sip, http, sink); a speaker of another kind fails with
    # 传输方式未启用. Empty: none — a test or demo installation whose speakers must stay silent.
    # In the environment: CUNXIANG_BROADCAST_TRANSPORTS=rtp,sip or =none.
    transports: Annotated[tuple[Literal["rtp", "sip", "http", "sink"], ...], NoDecode] = ("rtp", "sip", "http", "sink")

    @field_validator("transports", mode="before")
    @classmethod
    def _transport_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip() and part.strip() != "none")
        return value

    @model_validator(mode="after")
    def _ttl_within_cap(self) -> BroadcastSettings:
        if self.rtp_ttl > self.rtp_max_ttl:
            raise ValueError(f"rtp_ttl {self.rtp_ttl} is above rtp_max_ttl {self.rtp_max_ttl}")
        return self


class SchedulerSettings(_Section):
    # An occurrence missed (crash, restart) by less than this still plays once; older ones are recorded missed.
    # The same window decides replays: an item cut or left queued by a stop plays again (重播) if the
    # service is back within it.
    catch_up_grace_s: float = Field(600.0, ge=0)
    # How far back a start looks for occurrences to record as missed.
    missed_lookback_h: float = Field(24.0, gt=0, le=24 * 31)
    # APScheduler's own misfire grace for our wake-up job (a late wake still runs within this).
    misfire_grace_s: float = Field(3600.0, gt=0)
    # How often the active worker compares its plan with the tables (changes made by other processes).
    resync_s: float = Field(30.0, gt=0)
    # How far ahead the week view and conflict check look.
    plan_days: int = Field(7, ge=1, le=62)
    # Most occurrences one preview lists.
    preview_limit: int = Field(50, ge=1, le=1000)


_LINE_SAFE = re.compile(r"^[^\r\n]*$")
_DIAL_STRING = re.compile(r"^[A-Za-z0-9_./@&:+#*-]*$")


class AmiSettings(_Section):
    # Where the service reaches Asterisk's manager interface. In sandbox mode manager.conf is
    # rendered to listen exactly here (keep it on loopback unless Asterisk runs on another host).
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = Field("cunxiang", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Empty: generated once into <data_dir>/ami.secret (mode 0600); the sandbox's manager.conf gets the same.
    secret: str = Field("", pattern=_LINE_SAFE.pattern)
    connect_timeout_s: float = Field(5.0, gt=0)
    login_timeout_s: float = Field(10.0, gt=0)
    # An action (Originate, Ping…) unanswered this long fails; it may or may not have run.
    action_timeout_s: float = Field(10.0, gt=0)
    # A quiet connection is pinged this often; a ping unanswered for ping_timeout_s drops it (then reconnect).
    ping_interval_s: float = Field(5.0, gt=0)
    ping_timeout_s: float = Field(10.0, gt=0)
    # After a failure: wait reconnect_min_s, doubling up to reconnect_max_s.
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    # A list action (CoreShowChannels) whose end does not arrive this long after it was sent fails.
    event_list_timeout_s: float = Field(10.0, gt=0)
    # After login, how long Asterisk may take to say it is fully booted.
    boot_timeout_s: float = Field(60.0, gt=0)


class FastAgiSettings(_Section):
    # Where the FastAGI server listens; the dialplan's AGI() calls come here during a call.
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=1, le=65535)
    # How Asterisk reaches it (rendered into the dialplan); empty: host. Set it when Asterisk is elsewhere.
    public_host: str = ""
    # A request Asterisk does not finish sending within this long is dropped.
    request_timeout_s: float = Field(10.0, gt=0)


class IvrSettings(_Section):
    """Every timeout and retry count of the hotline's dialplan (rendered into extensions.conf).

    The defaults are for old callers: long waits, nothing ever ends a call on silence.
    Tests use short values; one test runs a call at these.
    """

    # Seconds the menu waits for a key once it has been read; no key means "speak after the tone".
    menu_timeout_s: float = Field(18.0, ge=0.5, le=120)
    # Wrong keys replay the menu this many times; then the caller is simply asked to speak.
    menu_attempts: int = Field(3, ge=1, le=10)
    # Typing a case number or PIN: seconds for the first key and between keys.
    digit_timeout_s: float = Field(15.0, ge=0.5, le=120)
    # Tries at a case number (and a PIN) before the caller is offered a person instead.
    number_attempts: int = Field(3, ge=1, le=10)
    # Longest message, and the seconds of silence that end it.
    record_max_s: int = Field(300, ge=5, le=3600)
    record_silence_s: int = Field(8, ge=1, le=60)
    # This long before the longest message ends, a caller still speaking hears a short tone and
    # "请在十秒内说完" (the sentence says this number); at the end she is told the message was cut.
    record_warning_s: int = Field(10, ge=2, le=60)
    # A message with no speech in it is asked for this many times in all, then kept as a missed call.
    record_attempts: int = Field(2, ge=1, le=5)
    # Who key 0 rings: a dial string (PJSIP/operator, PJSIP/op1&PJSIP/op2, Local/…); empty: take a message.
    operator_dial: str = Field("", pattern=_DIAL_STRING.pattern)
    # Ringing the operator this long unanswered means "please leave a message".
    operator_ring_s: int = Field(30, ge=1, le=300)
    # Any call ends after this long, whatever happens (a line stuck open must not stay up for ever).
    # The floor is for tests that watch the limit end a call; a real hotline wants an hour.
    call_limit_s: int = Field(3600, ge=10, le=24 * 3600)
    # Follow-up survey (回访): seconds to wait for 1/2/3, and how often the question is asked.
    survey_timeout_s: float = Field(15.0, ge=0.5, le=120)
    survey_attempts: int = Field(3, ge=1, le=10)
    # Callbacks (回拨): how long the villager's phone may ring.
    callback_ring_s: int = Field(45, ge=5, le=300)
    # Voice of the prompts (a name one of the TTS engines knows; empty: its default) and their speed.
    prompt_voice: str = ""
    prompt_rate: str = "-15%"
    # Pause after each digit of a number read back, and before each prompt.
    digit_pause_ms: int = Field(250, ge=0, le=2000)
    lead_in_ms: int = Field(300, ge=0, le=3000)

    @field_validator("prompt_rate")
    @classmethod
    def _signed_rate(cls, value: str) -> str:
        if not _SIGNED_PERCENT.fullmatch(value):
            raise ValueError("must be a signed percentage such as -15% or +10%")
        return value

    @model_validator(mode="after")
    def _warning_before_the_end(self) -> IvrSettings:
        if self.record_warning_s >= self.record_max_s:
            raise ValueError(
                f"record_warning_s ({self.record_warning_s}) must be shorter than record_max_s ({self.record_max_s})"
            )
        return self


class HotlineSettings(_Section):
    # Where recordings live once a call is over; empty: <data_dir>/recordings. Files are mode 0600.
    recordings_dir: str = ""
    # Recordings older than this many days are deleted (their record stays, marked purged); 0 keeps them.
    retention_days: int = Field(0, ge=0)
    # Digits of a case number, check digit included.
    case_number_length: int = Field(8, ge=5, le=8)
    # Digits of the PIN that lets a case be queried from another phone.
    pin_length: int = Field(4, ge=4, le=8)
    # Sound above the line's noise for less than this many seconds counts as "nothing was said".
    min_speech_s: float = Field(0.4, ge=0, le=10)
    # External Asterisk only (the sandbox derives them from its instance): where Asterisk writes
    # recordings and reads our prompts, as this service sees the directory and as Asterisk does,
    # and its CDR CSV file (for reconciliation).
    spool_dir: str = ""
    spool_dir_in_asterisk: str = ""
    prompts_dir: str = ""
    prompts_dir_in_asterisk: str = ""
    cdr_csv: str = ""
    # Asterisk's outgoing call-file spool as this service sees it (usually /var/spool/asterisk/outgoing; this
    # service must be able to write there): the alarms by phone placed without AMI. Empty: no such calls.
    outgoing_dir: str = ""
    # How long to wait after a call for MixMonitor to close its file before taking it as it is.
    mixmonitor_wait_s: float = Field(10.0, ge=0)
    # Besides after every AMI outage, reconcile this often (and sweep expired recordings).
    reconcile_interval_s: float = Field(600.0, gt=0)
    # 手机喊话 (docs/hotline.md "The phone-broadcast line"): the number cadres dial to broadcast a recorded
    # message. A call to this DID goes to its own dialplan context, never the hotline; empty: no such line.
    phonecast_did: str = Field("", pattern=r"^[0-9+*#]{0,32}$")
    # Longest message a cadre may record, and the seconds of silence that end it (a pause to think is not
    # the end: the default leaves room for one).
    phonecast_max_recording_s: int = Field(180, ge=10, le=600)
    phonecast_record_silence_s: int = Field(5, ge=1, le=60)
    # How long each question of the line waits for keys (the first and between two), and how often a
    # question is asked again on silence before the call ends with nothing broadcast.
    phonecast_key_timeout_s: float = Field(15.0, ge=0.5, le=120)
    phonecast_attempts: int = Field(3, ge=1, le=10)
    # 实时喊话 (issue 18): the hard limit of a live call on the loudspeakers, in seconds; the conference ends
    # the caller's turn there (喊话时间到了). 0: the line offers no live mode (recorded messages only).
    phonecast_live_max_s: int = Field(300, ge=0, le=1800)


class SandboxSettings(_Section):
    # The provisioned Asterisk root; empty: asked of deploy/asterisk/sandbox.sh.
    root: str = ""
    # The instance this service runs: <root>/srv/cunxiang/<instance>.
    instance: str = Field("main", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    # PJSIP listens here (UDP); loopback unless phones on the LAN must register (an open port invites fraud).
    sip_bind: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=1, le=65535)
    # The example softphone account; empty password: generated into <data_dir>/softphone.secret.
    softphone_user: str = Field("1001", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    softphone_password: str = Field("", pattern=_LINE_SAFE.pattern)
    # The carrier trunk for incoming calls and callbacks: off until trunk_host is set.
    trunk_host: str = Field("", pattern=r"^[A-Za-z0-9_.:-]*$")
    trunk_username: str = Field("", pattern=_LINE_SAFE.pattern)
    trunk_password: str = Field("", pattern=_LINE_SAFE.pattern)
    # Register to the carrier (most SIP trunks for small offices want it).
    trunk_register: bool = True


class CasesSettings(_Section):
    """The case workflow's clocks, follow-up calls, callbacks and limits (issue: cases).

    Clock lengths follow the 信访工作条例 (2022) as commonly applied: decide within 15 days,
    resolve within 60 days of acceptance, one extension of at most 30 days; 回访 the day after.
    """

    # Days to decide whether a case is accepted (受理/不予受理), counted from the day after it came in.
    acceptance_days: int = Field(15, ge=1, le=365)
    # Days to resolve, counted from the day after acceptance.
    resolution_days: int = Field(60, ge=1, le=365)
    # The one extension an approver may grant, at most this many days.
    max_extension_days: int = Field(30, ge=1, le=365)
    # The follow-up (回访) is due this many days after resolution (0: the same day).
    followup_after_days: int = Field(1, ge=0, le=30)
    # A case reopened after 不满意 gets back the days it had left, but at least this many.
    reopen_min_days: int = Field(15, ge=1, le=365)
    # calendar: N days, and a deadline on a rest day moves to the next working day (shift_off_rest_days);
    # working: N working days (weekdays, minus holidays, plus make-up days from the holiday table).
    day_counting: Literal["calendar", "working"] = "calendar"
    shift_off_rest_days: bool = True
    # A deadline this many days away or less puts a case on the due-soon list.
    due_soon_days: int = Field(3, ge=0, le=60)
    # Longest note, reason or result text, in characters.
    note_max_chars: int = Field(5000, ge=100, le=50_000)
    # Rows per case-list page, and most rows one export may hold.
    page_size: int = Field(50, ge=5, le=500)
    export_max_rows: int = Field(1_000_000, ge=1000)
    # Live pages: how often each process looks in the database for changes other processes made (its own
    # are seen at once), and how long one event stream stays open before the page reconnects (and its
    # sign-in is checked again).
    live_poll_s: float = Field(0.5, gt=0, le=60)
    live_stream_s: float = Field(300.0, ge=5, le=3600)

    # Automated follow-up calls (回访): only between these local times (start = end: any hour), how many
    # tries, how far apart.
    followup_calls: bool = True
    followup_call_start: time = time(9, 0)
    followup_call_end: time = time(20, 0)
    followup_attempts: int = Field(3, ge=1, le=10)
    followup_retry_interval_s: float = Field(2 * 3600.0, ge=1)
    # How long the villager's phone may ring for a follow-up call.
    followup_ring_s: float = Field(40.0, gt=0, le=300)
    # How often the runner looks for due follow-ups, and how many follow-up calls may be up at once.
    followup_poll_s: float = Field(60.0, gt=0)
    followup_concurrent_calls: int = Field(2, ge=1, le=20)
    # A placed follow-up call whose result has not come after this long is recorded as unknown.
    followup_result_timeout_s: float = Field(900.0, gt=0)

    # Callbacks (回拨): how long the operator's own phone may ring; the villager's is ivr.callback_ring_s.
    callback_operator_ring_s: float = Field(30.0, gt=0, le=300)
    # A callback asked for while no worker could place it is dropped after this long (never placed late).
    callback_request_ttl_s: float = Field(120.0, gt=0)
    # How the worker looks for callbacks asked for in another process, and gives up waiting for a result.
    callback_poll_s: float = Field(1.0, gt=0)
    callback_result_timeout_s: float = Field(4 * 3600.0, gt=0)
    # The villager's line, as Asterisk dials it; {number} is the caller's number.
    dial_template: str = Field("PJSIP/{number}@trunk", pattern=r"^[A-Za-z0-9_./@&:+#*{}-]+$")

    # Backups: the PostgreSQL client programs (must be at least the server's major version), and a time limit.
    pg_dump: str = "pg_dump"
    pg_restore: str = "pg_restore"
    backup_timeout_s: float = Field(3600.0, gt=0)
    # Also copy produced broadcast audio (it can be rendered again, but that takes time and an engine).
    backup_audio: bool = True

    @field_validator("dial_template")
    @classmethod
    def _has_number(cls, value: str) -> str:
        if value.count("{") != value.count("}") or any(
            part.split("}", 1)[0] != "number" for part in value.split("{")[1:]
        ):
            raise ValueError("the only placeholder is {number}")
        return value


class OpsSettings(_Section):
    """Watching the service itself: /metrics, free disk space, the clock (docs/operations.md#watching-the-service)."""

    # /metrics answers a bearer token when one is set (Authorization: Bearer …); without one, only callers
    # from these addresses or networks (a Prometheus on the same machine, by default).
    metrics_token: str = Field("", pattern=_LINE_SAFE.pattern)
    metrics_allow_from: Annotated[tuple[str, ...], NoDecode] = ("127.0.0.1/32", "::1/128")
    # How often free space is measured on the disks holding the data folder, recordings, audio and spool.
    disk_interval_s: float = Field(30.0, gt=0)
    # Below either figure the admins are warned (待办, /healthz degraded).
    disk_warn_free_percent: float = Field(10.0, ge=0, le=100)
    disk_warn_free_mb: int = Field(2048, ge=0)
    # Below either figure uploads and approvals are refused: what is left is kept for the hotline's recordings.
    disk_refuse_free_percent: float = Field(5.0, ge=0, le=100)
    disk_refuse_free_mb: int = Field(1024, ge=0)
    # The clock's synchronisation, asked of the system this often (timedatectl, else chronyc).
    clock_interval_s: float = Field(60.0, gt=0)
    # An offset from the time servers larger than this is warned about, like an unsynchronised clock.
    clock_max_offset_ms: float = Field(500.0, gt=0)
    timedatectl: str = "timedatectl"
    chronyc: str = "chronyc"
    clock_command_timeout_s: float = Field(5.0, gt=0)
    # Alarms by phone (docs/operations.md#alarms-by-phone): how often the worker looks for trouble, how long the
    # phone link or a watched state must stay wrong before it phones (a blip is not worth waking someone).
    alarm_interval_s: float = Field(15.0, gt=0)
    alarm_after_s: float = Field(300.0, ge=0)
    # After an alarm of one kind (about one thing), another of the same is not raised within this long: a state
    # that flaps does not become a storm of calls.
    alarm_quiet_s: float = Field(3600.0, ge=0)
    # Each duty officer's phone rings this long; unacknowledged, the next one on duty is called, and after the
    # whole list a new round starts every alarm_round_interval_s, at most alarm_rounds rounds.
    alarm_ring_s: float = Field(40.0, gt=0)
    alarm_round_interval_s: float = Field(300.0, ge=0)
    alarm_rounds: int = Field(3, ge=1, le=20)
    # How an officer's number is dialled ({number}); a value with "/" (PJSIP/op1, Local/…) is dialled as it is.
    alarm_dial_template: str = Field("PJSIP/{number}@trunk", pattern=_LINE_SAFE.pattern)
    # A failed emergency broadcast older than this is history, not an alarm (a restart does not phone about it).
    alarm_emergency_lookback_s: float = Field(3600.0, gt=0)
    # No worker heartbeat for this long: any process that is up raises worker_down and calls by call file.
    # (Well above broadcast.heartbeat_s: one late heartbeat is not a dead worker.)
    worker_down_after_s: float = Field(120.0, gt=0)

    @field_validator("metrics_allow_from", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("metrics_allow_from")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an address or network") from exc
        return value


class AlertsSettings(_Section):
    """Official warnings (CAP 1.2, docs/alerts.md)."""

    # A CAP message larger than this is refused unread (the national system's are a few KB).
    max_message_bytes: int = Field(256 * 1024, ge=4096, le=4 * 1024 * 1024)
    # The spoken text's cap: lead-in, name and level, headline and instruction first, then the description.
    max_spoken_chars: int = Field(600, ge=100, le=5000)


class PhonecastSettings(_Section):
    """手机喊话: village cadres broadcast a recording from their phone (docs/broadcasting.md, 手机喊话)."""

    # Wrong PINs before each further try must wait (the wait doubles up to the cap): counted per
    # (calling number, cadre), per cadre across numbers, and per number across cadres; failures older than
    # pin_window_s are forgotten. The same rules as the web login's limiter (security.login_*).
    pin_free_attempts: int = Field(5, ge=1)
    pin_user_free_attempts: int = Field(10, ge=1)
    pin_number_free_attempts: int = Field(10, ge=1)
    pin_base_delay_s: float = Field(60.0, ge=0)
    pin_max_delay_s: float = Field(3600.0, ge=0)
    pin_window_s: float = Field(3600.0, gt=0)
    # How often a phone broadcast is read within its item.
    repeats: int = Field(1, ge=1, le=5)
    # How long submit waits for the speakers to start before telling the caller (the call is waiting).
    start_wait_s: float = Field(15.0, gt=0, le=120)
    # 实时喊话: how long go_live waits for the live speakers' legs to answer before the caller hears the chime.
    live_start_wait_s: float = Field(10.0, gt=0, le=60)
    # How often the desk looks for scheduled phone broadcasts that are due.
    due_poll_s: float = Field(5.0, gt=0, le=300)
    # The line's number printed on a cadre's card as the county publishes it (e.g. with its area code); empty:
    # the DID the line answers on (hotline.phonecast_did).
    line_number: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("./data")
    timezone: str = "Asia/Shanghai"
    # Shown in the pages and spoken in prompts (您好，这里是{县}群众诉求热线).
    county_name: str = "示例县"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # sandbox: the service starts the bundled Asterisk sandbox; external: a site's own
    # Asterisk is reached over AMI/FastAGI; none: no telephony at all.
    asterisk: Literal["sandbox", "external", "none"] = "sandbox"

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    worker: WorkerSettings = WorkerSettings()
    tts: TtsSettings = TtsSettings()
    audio: AudioSettings = AudioSettings()
    broadcast: BroadcastSettings = BroadcastSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    ami: AmiSettings = AmiSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    ivr: IvrSettings = IvrSettings()
    hotline: HotlineSettings = HotlineSettings()
    sandbox: SandboxSettings = SandboxSettings()
    cases: CasesSettings = CasesSettings()
    ops: OpsSettings = OpsSettings()
    alerts: AlertsSettings = AlertsSettings()
    phonecast: PhonecastSettings = PhonecastSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cunxiang.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::", "") else self.server.host
        return f"http://{host}:{self.server.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the TOML file's content (see load_settings); the
        # environment overrides it.
        return (env_settings, init_settings)


def _setting_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc]
    return ENV_PREFIX + "_".join(parts).upper() + f" ({'.'.join(parts)})"


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        given = error.get("input")
        shown = "" if isinstance(given, Mapping) else f" (got {given!r})"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{_setting_name(tuple(error['loc']))}: {message}{shown}")
    return "bad setting " + "; ".join(problems)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc


def unknown_environment_names(environ: Mapping[str, str], known_prefixes: tuple[str, ...] = ()) -> list[str]:
    """``CUNXIANG_*`` variables that name no setting: most likely typos worth a warning."""
    names = {ENV_PREFIX + "CONFIG"}
    for field, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(f"{ENV_PREFIX}{field}_{sub}".upper() for sub in annotation.model_fields)
        else:
            names.add(f"{ENV_PREFIX}{field}".upper())
    return sorted(
        key for key in environ if key.startswith(ENV_PREFIX) and key not in names and not key.startswith(known_prefixes)
    )


def load_settings(config_file: Path | None = None) -> Settings:
    """Read and validate every setting; raise :class:`SettingsError` with one line if any is bad."""
    if config_file is None and os.environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(os.environ[ENV_PREFIX + "CONFIG"])
    from_file = _read_toml(config_file) if config_file else {}
    try:
        return Settings(**from_file)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except PydanticSettingsError as exc:
        # A section given whole as one variable (CUNXIANG_SERVER='{…') that is not valid JSON.
        raise SettingsError(f"bad setting: {exc}") from None
