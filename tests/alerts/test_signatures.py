"""Signed CAP messages: a source with a certificate takes only what its key signed, in RSA or ECDSA with SHA-256.

The certificates are made here (self-signed, valid now); the messages are signed with signxml's signer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.signer import XMLSigner

from alerts.cap import CapRefused
from server import Runtime
from tests.alerts.fixtures import cap_bytes
from tests.alerts.support import RecordingBroadcaster, coded_county
from tests.conftest import SYSTEM

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def make_certificate(key: PrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "示例县气象局（测试）")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def sign(data: bytes, key: PrivateKey, certificate: str, algorithm: str) -> bytes:
    root = etree.fromstring(data)
    signed = XMLSigner(signature_algorithm=algorithm, digest_algorithm="sha256").sign(root, key=key, cert=certificate)
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


async def _signed_source(runtime: Runtime, certificate: str) -> int:
    source, _token = await runtime.alerts.service.create_source(
        SYSTEM, name="省预警中心（签名）", kind="push", certificate_pem=certificate
    )
    return source.id


@pytest.mark.parametrize(("key", "algorithm"), [(RSA_KEY, "rsa-sha256"), (EC_KEY, "ecdsa-sha256")])
async def test_a_message_signed_by_the_sources_key_is_taken(runtime: Runtime, key: PrivateKey, algorithm: str) -> None:
    await coded_county(runtime)
    runtime.alerts.service.use_broadcaster(recorder := RecordingBroadcaster())
    certificate = make_certificate(key)
    source = await _signed_source(runtime, certificate)
    data = sign(cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()), key, certificate, algorithm)
    receipt = await runtime.alerts.service.receive(source, data)
    assert receipt.state == "aired" and len(recorder.aired) == 1


async def _refused(runtime: Runtime, source: int, data: bytes) -> CapRefused:
    with pytest.raises(CapRefused) as refused:
        await runtime.alerts.service.receive(source, data)
    return refused.value


async def test_an_unsigned_message_from_a_source_that_signs_is_refused(runtime: Runtime) -> None:
    source = await _signed_source(runtime, make_certificate(RSA_KEY))
    refused = await _refused(runtime, source, cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()))
    assert refused.code == "cap.unsigned"


async def test_a_message_changed_after_signing_or_signed_by_another_key_is_refused(runtime: Runtime) -> None:
    certificate = make_certificate(RSA_KEY)
    source = await _signed_source(runtime, certificate)
    signed = sign(cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()), RSA_KEY, certificate, "rsa-sha256")
    tampered = signed.replace("红色预警信号".encode(), "蓝色预警信号".encode())
    assert (await _refused(runtime, source, tampered)).code == "cap.signature"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    by_other = sign(
        cap_bytes("cn-orange-gale.xml", now=runtime.clock.now()), other, make_certificate(other), "rsa-sha256"
    )
    assert (await _refused(runtime, source, by_other)).code == "cap.signature"


async def test_a_signature_in_an_algorithm_we_do_not_take_is_refused_naming_it_never_read_as_unsigned(
    runtime: Runtime,
) -> None:
    certificate = make_certificate(RSA_KEY)
    source = await _signed_source(runtime, certificate)
    signed = sign(cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()), RSA_KEY, certificate, "rsa-sha256")
    sha1 = signed.replace(b"xmldsig-more#rsa-sha256", b"xmldsig#rsa-sha1").replace(
        b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", b"http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    )
    refused = await _refused(runtime, source, sha1)
    assert refused.code == "cap.signature_algorithm" and "rsa-sha1" in refused.reason


async def test_a_certificate_that_is_not_one_is_refused_when_the_source_is_made(runtime: Runtime) -> None:
    from common.errors import InvalidInput

    with pytest.raises(InvalidInput):
        await runtime.alerts.service.create_source(SYSTEM, name="坏证书", kind="push", certificate_pem="not a cert")
