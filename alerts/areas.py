"""Which villages an alert's ``<area>`` covers, and why (the page shows the reason for each).

By ``<geocode>`` first: an administrative code covers every village whose own code begins with it (a county's
six digits cover all its villages, a township's nine its own). Only geocodes whose ``valueName`` says they are
administrative codes are read (:data:`ADMIN_CODE_NAMES`); others (SAME, FIPS…) are not ours to interpret.
Then by ``<polygon>`` (the village's coordinates inside it, ray casting on latitude/longitude, fine at a
county's scale) and ``<circle>`` (great-circle distance within the radius, in km). A village without a code
or coordinates is matched only by what it has.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alerts.cap import CapArea, Circle, Point

# valueName of a geocode that carries a Chinese administrative code, compared without case, spaces or "/".
ADMIN_CODE_NAMES = frozenset({"gbt2260", "行政区划代码", "统计用区划代码", "admincode", "areacode", "adcode"})
EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Place:
    """A village as matching sees it."""

    village_id: int
    village: str
    township: str
    code: str | None
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class Match:
    place: Place
    why: str


def _is_admin_code(name: str) -> bool:
    return name.replace(" ", "").replace("/", "").replace("-", "").lower() in ADMIN_CODE_NAMES


def admin_codes(area: CapArea) -> list[str]:
    """The area's administrative codes, trailing zero groups dropped (150000 is the province, 159900 a city)."""
    codes = []
    for name, value in area.geocodes:
        value = value.strip()
        if _is_admin_code(name) and value.isdigit() and len(value) in (2, 4, 6, 9, 12):
            codes.append(_significant(value))
    return codes


def _significant(code: str) -> str:
    # A 6-digit code ending in 00 or 0000 names a prefecture or province: its prefix covers the lot.
    if len(code) == 6:
        for zeros in ("0000", "00"):
            if code.endswith(zeros):
                return code[: -len(zeros)]
    if len(code) == 12 and code.endswith("000"):
        return code[:9]
    return code


def in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting; a point on an edge may fall either way (a village is not a point anyway)."""
    inside = False
    for a, b in itertools.pairwise(polygon):
        if (a.lat > point.lat) != (b.lat > point.lat):
            crossing = a.lon + (point.lat - a.lat) * (b.lon - a.lon) / (b.lat - a.lat)
            if point.lon < crossing:
                inside = not inside
    return inside


def distance_km(a: Point, b: Point) -> float:
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def in_circle(point: Point, circle: Circle) -> bool:
    return distance_km(point, circle.centre) <= circle.radius_km


def _why(place: Place, area: CapArea) -> str | None:
    if place.code:
        for code in admin_codes(area):
            if place.code.startswith(code):
                return f"区划代码 {code} 包含本村 {place.code}"
    if place.latitude is None or place.longitude is None:
        return None
    point = Point(place.latitude, place.longitude)
    for polygon in area.polygons:
        if in_polygon(point, polygon):
            return f"坐标 {point.lat:.4f},{point.lon:.4f} 在预警多边形内"
    for circle in area.circles:
        if in_circle(point, circle):
            distance = distance_km(point, circle.centre)
            return f"距预警圆心 {distance:.1f} 公里，在半径 {circle.radius_km:g} 公里内"
    return None


def match_places(areas: Iterable[CapArea], places: Iterable[Place]) -> list[Match]:
    """Every place some area covers, once, with the first reason found (areas in message order)."""
    areas = list(areas)
    found = []
    for place in places:
        for area in areas:
            why = _why(place, area)
            if why is not None:
                found.append(Match(place, f"{area.description}：{why}" if area.description else why))
                break
    return found
