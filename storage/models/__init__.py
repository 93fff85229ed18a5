"""Every ORM model, imported here so Alembic and the app see one metadata."""

from storage.models.accounts import ROLES, AuditEntry, User, UserRole, UserTownship
from storage.models.areas import (
    CODECS,
    TRANSPORT_KINDS,
    UNIT_KINDS,
    VILLAGE_KINDS,
    County,
    Speaker,
    Township,
    Unit,
    Village,
    Zone,
)
from storage.models.base import Base

__all__ = [
    "CODECS",
    "ROLES",
    "TRANSPORT_KINDS",
    "UNIT_KINDS",
    "VILLAGE_KINDS",
    "AuditEntry",
    "Base",
    "County",
    "Speaker",
    "Township",
    "Unit",
    "User",
    "UserRole",
    "UserTownship",
    "Village",
    "Zone",
]
