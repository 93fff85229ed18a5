from __future__ import annotations

import pytest

from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def test_a_user_signs_in_and_sees_who_they_are(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("leader", county_wide=True)
    client = await (await new_client()).login(username, password)
    me = await client.get_json("/api/v1/session")
    assert me["username"] == username
    assert me["roles"] == ["leader"]
