"""The signed-in user as the domains see it: roles, township scope, permissions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.errors import NotFound, PermissionDenied
from storage.audit import Actor

ROLE_LABELS = {
    "admin": "系统管理员",
    "staff": "乡镇干部",
    "approver": "审核人",
    "operator": "接线员",
    "inspector": "纪检监察",
    "leader": "县领导",
}


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    display_name: str
    roles: frozenset[str]
    county_wide: bool
    township_ids: frozenset[int]
    can_emergency: bool
    ip: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, username=self.username, ip=self.ip)

    def has_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    def require_role(self, *roles: str) -> None:
        """403 for a whole kind of action the user's roles do not allow."""
        if not self.has_role(*roles):
            labels = "、".join(ROLE_LABELS.get(role, role) for role in roles)
            raise PermissionDenied(f"此操作需要以下角色之一：{labels}", code="role.required")

    def sees_township(self, township_id: int | None) -> bool:
        """Objects not yet placed in a township (a new hotline case) are for county-wide users only."""
        if self.county_wide:
            return True
        return township_id is not None and township_id in self.township_ids

    def require_township(self, township_id: int | None, what: str = "对象") -> None:
        """404, not 403: a user outside a township's scope must not learn that the object exists."""
        if not self.sees_township(township_id):
            raise NotFound(f"{what}不存在", code="not_found")

    def township_filter(self) -> frozenset[int] | None:
        """None for county-wide users (no filter), else the townships they may see."""
        return None if self.county_wide else self.township_ids


def role_labels(roles: Iterable[str]) -> str:
    return "、".join(ROLE_LABELS.get(role, role) for role in sorted(roles))
