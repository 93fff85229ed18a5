"""Where audio may go: the county's own network (private unicast, 239.0.0.0/8 groups), one rule for every way in."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from server import Runtime
from settings import BroadcastSettings, Settings
from storage.models import Speaker, ZoneBroadcastSettings
from tests.conftest import BOTH_DATABASES, make_settings
from tests.foundation.seed import seed_tree
from tests.support.cli import environment, run
from tests.support.http import ApiClient

REFUSED_SPEAKERS = [
    ("8.8.8.8:5004", "公网地址"),
    ("192.168.1.255:5004", "广播地址"),
    ("192.168.1.0:5004", "网段地址"),
    ("224.0.0.1:5004", "239.0.0.0/8"),
    ("224.0.0.251:5353", "239.0.0.0/8"),
    ("230.1.2.3:5004", "239.0.0.0/8"),
    ("10.0.0.5:53", "1024"),
    ("10.0.0.5:٥٠٠٤", "IP:端口"),
]


def chinese(text: str) -> bool:
    return re.search("[\u4e00-\u9fff]", text) is not None


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
@pytest.mark.parametrize(("address", "reason"), REFUSED_SPEAKERS, ids=[address for address, _ in REFUSED_SPEAKERS])
async def test_a_speaker_off_the_countys_network_is_refused_naming_the_field(
    runtime: Runtime, admin: ApiClient, address: str, reason: str
) -> None:
    tree = await seed_tree(runtime)
    response = await admin.post(
        "/api/v1/speakers", json={"zone_id": tree.zone_ids[0], "name": "新喇叭", "transport": "rtp", "address": address}
    )
    body = await response.json()
    assert response.status == 400, body
    assert list(body["error"]["fields"]) == ["address"]
    assert reason in body["error"]["message"] and "终端地址" in body["error"]["message"]
    # Nor may an existing speaker be moved there.
    moved = await admin.patch(f"/api/v1/speakers/{tree.speaker_ids[0]}", json={"address": address})
    assert moved.status == 400
    async with runtime.sessions() as session:
        speaker = await session.get(Speaker, tree.speaker_ids[0])
    assert speaker is not None and speaker.address.startswith("127.0.0.1:")


@pytest.mark.parametrize("address", ["10.20.30.40:5004", "172.16.0.9:5004", "100.64.3.2:5004", "239.10.0.1:5004"])
async def test_private_vpn_and_scoped_multicast_addresses_are_accepted(
    runtime: Runtime, admin: ApiClient, address: str
) -> None:
    tree = await seed_tree(runtime)
    await admin.post_json(
        "/api/v1/speakers",
        {"zone_id": tree.zone_ids[0], "name": "内网喇叭", "transport": "rtp", "address": address},
        expect=201,
    )


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({"rtp_group": "224.0.0.251:5353", "rtp_ttl": 1}, "rtp_group", "239.0.0.0/8"),
        ({"rtp_group": "230.1.2.3:5004", "rtp_ttl": 4}, "rtp_group", "239.0.0.0/8"),
        ({"rtp_group": "239.1.2.3:123", "rtp_ttl": 4}, "rtp_group", "1024"),
        ({"rtp_group": "239.1.2.3:5004", "rtp_ttl": 255}, "rtp_ttl", "0到8"),
    ],
    ids=["mdns", "unscoped", "low-port", "ttl-255"],
)
async def test_a_zone_group_stays_scoped_and_its_ttl_capped(
    runtime: Runtime, admin: ApiClient, payload: dict[str, object], field: str, reason: str
) -> None:
    tree = await seed_tree(runtime)
    response = await admin.client.put(f"/api/v1/zones/{tree.zone_ids[0]}/broadcast", json=payload)
    body = await response.json()
    assert response.status == 400, body
    assert list(body["error"]["fields"]) == [field]
    assert reason in body["error"]["message"] and chinese(body["error"]["message"])
    async with runtime.sessions() as session:
        assert await session.get(ZoneBroadcastSettings, tree.zone_ids[0]) is None


class TestASiteThatAllowsMore:
    @pytest.fixture
    def settings(self, tmp_path: Path, database_url: str) -> Settings:
        broadcast = BroadcastSettings(rtp_allow_public_unicast=True, rtp_allow_low_ports=True, rtp_max_ttl=16)
        return make_settings(tmp_path / "data", database_url, broadcast=broadcast)

    async def test_public_unicast_low_ports_and_a_higher_ttl_when_the_site_says_so(
        self, runtime: Runtime, admin: ApiClient
    ) -> None:
        tree = await seed_tree(runtime)
        for address in ("8.8.4.4:5004", "10.0.0.7:1000"):
            await admin.post_json(
                "/api/v1/speakers",
                {"zone_id": tree.zone_ids[0], "name": f"喇叭{address}", "transport": "rtp", "address": address},
                expect=201,
            )
        zone = f"/api/v1/zones/{tree.zone_ids[0]}/broadcast"
        saved = await admin.client.put(zone, json={"rtp_group": "239.1.1.1:5004", "rtp_ttl": 16})
        assert saved.status == 200
        # Never the local control block or an unscoped group, whatever the site says.
        refused = await admin.client.put(zone, json={"rtp_group": "224.0.0.1:5004"})
        assert refused.status == 400


@pytest.mark.slow
@pytest.mark.parametrize(
    ("address", "reason"), [("8.8.8.8:5004", "公网地址"), ("192.168.1.255:5004", "广播地址"), ("127.0.0.1:53", "1024")]
)
async def test_the_speaker_test_command_obeys_the_same_rules(tmp_path: Path, address: str, reason: str) -> None:
    env = environment(tmp_path / "data", CUNXIANG_TTS_ENGINES='["espeak"]')
    done = await asyncio.to_thread(run, ["broadcast", "test", "--rtp", address], env)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0] and "Traceback" not in done.stderr
