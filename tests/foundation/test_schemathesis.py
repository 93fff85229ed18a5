"""Property-based run of the whole OpenAPI document (schemathesis), signed in as each role of the demo county.

The real service runs as its own process (``cunxiang serve``) on a demo county, with every
transport switched off (an admin may create speakers and start plays: nothing is sent) and
the offline speech engine only (nothing reaches the internet). Each operation gets valid and
invalid requests from the schema, as every role; every answer must be below 500 and match the
document (status declared, content type, body schema).

Budget: a fixed seed, derandomised, ``EXAMPLES`` requests per operation for a role it is meant
for and ``EXAMPLES_FORBIDDEN`` for one it refuses (valid and invalid data mixed), no shrinking.
About 3,400 requests in all (4,600 at ten examples: 95 s of requests, 2 min with the demo county's set-up on
the project's 2-core machine, alone; 150-200 s in a full run, where it is the longest test and CPU-bound).
Six per allowed operation and role (valid and invalid data mixed, the same ones every run with the fixed
seed) keep every operation exercised as every role at under three quarters of the cost.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.cli import CUNXIANG, environment, free_port
from tests.support.demo import DemoCounty

pytestmark = pytest.mark.slow

ROLES = ("staff", "approver", "operator", "inspector", "leader", "admin")  # admin last: it may delete things
EXAMPLES = 6
EXAMPLES_FORBIDDEN = 2
SEED = 20261205
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Operations that end the caller's own session or change its password: the run would go on signed out.
# Each has its own tests (tests/foundation/test_sessions.py, test_auth.py).
SESSION_ENDING = {
    ("DELETE", "/api/v1/session"),
    ("POST", "/api/v1/session/password"),
    ("DELETE", "/api/v1/session/devices/{id}"),
}
# Operations on one user: pinned to an account made for the run, so an admin's run cannot disable itself.
ON_A_USER = "/api/v1/users/{id}"


@dataclass
class Findings:
    requests: int = 0
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def demo_service(
    tmp_path_factory: pytest.TempPathFactory, demo_county: DemoCounty
) -> Iterator[tuple[str, dict[str, str]]]:
    """The service on the demo county, transports off; its URL and the demo accounts (username per role).

    The county is a copy of the run's demo county (tests/support/demo.py: what ``cunxiang init`` and
    ``cunxiang demo`` make, built once per run for every test that walks it; the commands themselves are
    tested in tests/foundation/test_cli.py): loading it again here cost half a minute of CPU.
    """
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    database_url = demo_county.copy_to(data_dir)
    env = environment(
        data_dir,
        CUNXIANG_DATABASE_URL=database_url,
        CUNXIANG_TTS_ENGINES="espeak",
        CUNXIANG_BROADCAST_TRANSPORTS="none",
        CUNXIANG_CASES_FOLLOWUP_CALLS="false",
        CUNXIANG_LOG_LEVEL="WARNING",
    )
    logins: dict[str, str] = {}
    for line in (data_dir / "demo-logins.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            username, password, roles = line.split("\t")
            logins.setdefault(roles.split(",")[0], f"{username}\t{password}")
    port = free_port()
    log = (data_dir / "serve.log").open("w")
    process = subprocess.Popen(
        [CUNXIANG, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (data_dir / "serve.log").read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        yield url, logins
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def sign_in(url: str, login: str) -> tuple[requests.Session, dict[str, str]]:
    username, password = login.split("\t")
    session = requests.Session()
    response = session.post(f"{url}/api/v1/session", json={"username": username, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return session, {"X-CSRF-Token": response.json()["csrf_token"]}


def test_every_operation_as_every_role_answers_below_500_and_as_documented(
    demo_service: tuple[str, dict[str, str]],
) -> None:
    url, logins = demo_service
    admin_session, admin_headers = sign_in(url, logins["admin"])
    document = admin_session.get(f"{url}/api/openapi.json", timeout=10).json()
    target = admin_session.post(
        f"{url}/api/v1/users",
        json={"username": "fuzz.target", "display_name": "被测账号", "roles": ["leader"], "county_wide": True},
        headers=admin_headers,
        timeout=10,
    )
    assert target.status_code == 201, target.text
    target_id = target.json()["id"]
    schema = schemathesis.openapi.from_dict(document)
    results = list(schema.get_all_operations())
    assert not [result.err() for result in results if isinstance(result, Err)]
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    findings = Findings()
    started = time.monotonic()
    for role in ROLES:
        session, headers = sign_in(url, logins[role])
        for operation in operations:
            if (operation.method.upper(), operation.path) in SESSION_ENDING:
                continue
            allowed = role in operation.definition.raw.get("x-roles", ROLES)
            pinned = {"id": target_id} if operation.path.startswith(ON_A_USER) else None
            fuzz(operation, session, headers, url, pinned, EXAMPLES if allowed else EXAMPLES_FORBIDDEN, findings, role)
        # Still signed in: nothing in the run ended this role's session.
        assert session.get(f"{url}/api/v1/session", timeout=10).status_code == 200, role
    elapsed = time.monotonic() - started
    print(f"schemathesis: {findings.requests} requests in {elapsed:.0f} s, {len(findings.failures)} failures")
    assert not findings.failures, "\n\n".join(findings.failures[:20])


def fuzz(
    operation: Any,
    session: requests.Session,
    headers: dict[str, str],
    url: str,
    pinned: dict[str, Any] | None,
    examples: int,
    findings: Findings,
    role: str,
) -> None:
    strategies = [
        operation.as_strategy(generation_mode=mode, path_parameters=pinned)
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]
    counter = itertools.count()

    @seed(SEED)
    @given(case=st.one_of(*strategies))
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    def one(case: Any) -> None:
        next(counter)
        response = case.call(base_url=url, session=session, headers=headers, timeout=30)
        findings.requests += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, AssertionError, BaseExceptionGroup) as failure:  # one check failed, or several at once
            findings.failures.append(f"[{role}] {operation.label}: {str(failure)[:3000]}")

    one()
