"""The area tree (county → township → village → zone → speaker) and the units cases go to."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models.base import Base
from storage.types import UtcDateTime

VILLAGE_KINDS = ("village", "community")  # 行政村, 社区
TRANSPORT_KINDS = ("sip", "rtp", "http", "sink")
# What a live call (手机喊话 实时) reaches through Asterisk; the others get its recording afterwards.
LIVE_TRANSPORTS = ("sip", "rtp")
# How a speaker is reached, as its users call it (never the code: sip, rtp, http, sink).
TRANSPORT_LABELS = {"sip": "SIP 寻呼", "rtp": "RTP", "http": "4G 终端", "sink": "声卡/文件"}
CODECS = ("pcmu", "pcma", "g722", "mp3", "wav")
UNIT_KINDS = ("township", "department")
# Codecs as the pages name them.
CODEC_LABELS = {
    "pcmu": "电话音质（μ律）",
    "pcma": "电话音质（国内标准律）",
    "g722": "宽带电话音质",
    "mp3": "压缩音频",
    "wav": "无损音频",
}
VILLAGE_KIND_LABELS = {"village": "行政村", "community": "社区"}
UNIT_KIND_LABELS = {"township": "乡镇", "department": "县直部门"}


class County(Base):
    __tablename__ = "counties"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The official administrative code (GB/T 2260, six digits): CAP alerts name places by it.
    code: Mapped[str | None] = mapped_column(String(12), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    townships: Mapped[list[Township]] = relationship(back_populates="county", order_by="Township.id")


class Township(Base):
    __tablename__ = "townships"
    __table_args__ = (UniqueConstraint("county_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # The nine-digit statistical division code (统计用区划代码): the county's six digits and three more.
    code: Mapped[str | None] = mapped_column(String(12))
    # Nothing but 应急 may start between quiet_start and quiet_end (Asia/Shanghai wall clock).
    quiet_start: Mapped[time] = mapped_column(Time(), default=time(21, 30))
    quiet_end: Mapped[time] = mapped_column(Time(), default=time(6, 30))
    # 喊话编号: the digits a cadre presses on the phone to choose it (unique among townships; 手机喊话).
    phonecast_code: Mapped[str | None] = mapped_column(String(8), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    county: Mapped[County] = relationship(back_populates="townships")
    villages: Mapped[list[Village]] = relationship(back_populates="township", order_by="Village.id")


class Village(Base):
    __tablename__ = "villages"
    __table_args__ = (
        UniqueConstraint("township_id", "name"),
        CheckConstraint("kind IN ('village', 'community')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="village")
    # The twelve-digit statistical division code (the township's nine digits and three more), and where the
    # village is (WGS 84): how an official alert's <geocode>, <polygon> and <circle> find it.
    code: Mapped[str | None] = mapped_column(String(12), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # 喊话编号 (unique among villages; 手机喊话).
    phonecast_code: Mapped[str | None] = mapped_column(String(8), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    township: Mapped[Township] = relationship(back_populates="villages")
    zones: Mapped[list[Zone]] = relationship(back_populates="village", order_by="Zone.id")


class Zone(Base):
    """A broadcast zone (播出分区): the speakers that always play the same thing together."""

    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("village_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    village_id: Mapped[int] = mapped_column(ForeignKey("villages.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # 测试分区: the only zones where an alert marked Test or Exercise may play (a loudspeaker in the office).
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    # 喊话编号 (unique among zones; 手机喊话): typed on the keypad to choose a zone.
    phonecast_code: Mapped[str | None] = mapped_column(String(8), index=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    village: Mapped[Village] = relationship(back_populates="zones")
    speakers: Mapped[list[Speaker]] = relationship(back_populates="zone", order_by="Speaker.id")


class Speaker(Base):
    """A loudspeaker terminal (终端) and how to reach it.

    ``address`` depends on ``transport``: a PJSIP endpoint name (sip), host:port
    or a multicast group:port (rtp), a terminal id (http, which pulls with its
    own token), a file or ALSA device (sink).
    """

    __tablename__ = "speakers"
    __table_args__ = (
        CheckConstraint("transport IN ('sip', 'rtp', 'http', 'sink')", name="transport"),
        UniqueConstraint("transport", "address"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(255))
    codec: Mapped[str] = mapped_column(String(8), default="pcmu")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # HTTP-pull terminals authenticate with a token; only its hash is kept.
    token_hash: Mapped[str | None] = mapped_column(String(128))
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    zone: Mapped[Zone] = relationship(back_populates="speakers")


class Unit(Base):
    """A township government or a county department that cases are assigned to."""

    __tablename__ = "units"
    __table_args__ = (CheckConstraint("kind IN ('township', 'department')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    township_id: Mapped[int | None] = mapped_column(ForeignKey("townships.id", ondelete="RESTRICT"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


def transport_label(transport: str, address: str = "") -> str:
    """A speaker's transport in Chinese; a sink is a sound card (``alsa:``) or a file (``file:``)."""
    if transport == "sink" and address:
        return "声卡" if address.startswith("alsa:") else "文件"
    return TRANSPORT_LABELS.get(transport, "其他方式")


__all__ = [
    "CODECS",
    "LIVE_TRANSPORTS",
    "TRANSPORT_KINDS",
    "TRANSPORT_LABELS",
    "UNIT_KINDS",
    "VILLAGE_KINDS",
    "County",
    "Speaker",
    "Township",
    "Unit",
    "Village",
    "Zone",
    "transport_label",
]
