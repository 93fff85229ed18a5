"""XML signatures on CAP messages (XML-DSig, enveloped): verified against the certificate a source is configured
with.

A source with a certificate must sign: a message without ``<Signature>`` is refused, never read as unsigned.
Only RSA and ECDSA with SHA-256 are accepted (signature and digests); a signature in any other algorithm is
refused naming that algorithm. The certificate is pinned (its key verifies, no chain is built): the county
configures the sender's own certificate. The cryptography is signxml's (on lxml and cryptography); the checks
of what is accepted are ours, made before it runs.
"""

from __future__ import annotations

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier

from alerts.cap import CapRefused

DSIG = "http://www.w3.org/2000/09/xmldsig#"
ACCEPTED_SIGNATURES = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": SignatureMethod.RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": SignatureMethod.ECDSA_SHA256,
}
ACCEPTED_DIGESTS = {"http://www.w3.org/2001/04/xmlenc#sha256"}


def load_certificate(pem: str) -> x509.Certificate:
    """The source's certificate, or ValueError when the text is not one PEM certificate."""
    return x509.load_pem_x509_certificate(pem.encode())


def verify_signature(data: bytes, certificate_pem: str) -> None:
    """Return when ``data`` (already read safely and validated) carries a valid signature by the certificate's key.

    :class:`CapRefused` otherwise: ``cap.unsigned``, ``cap.signature_algorithm`` (naming it) or ``cap.signature``.
    """
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)
    root = etree.fromstring(data, parser)
    signatures = root.findall(f"{{{DSIG}}}Signature")
    if not signatures:
        raise CapRefused("这个来源的消息必须有数字签名，这条没有签名", code="cap.unsigned")
    if len(signatures) > 1:
        raise CapRefused(
            "消息有多个签名，无法确定以哪个为准", code="cap.signature", detail="several Signature elements"
        )
    signature = signatures[0]
    method = signature.find(f"{{{DSIG}}}SignedInfo/{{{DSIG}}}SignatureMethod")
    algorithm = method.get("Algorithm", "") if method is not None else ""
    if algorithm not in ACCEPTED_SIGNATURES:
        raise CapRefused(
            f"签名算法不受支持：{algorithm or '未写明'}（只接受 RSA 或 ECDSA 配合 SHA-256）",
            code="cap.signature_algorithm",
            detail=algorithm,
        )
    for digest in signature.iter(f"{{{DSIG}}}DigestMethod"):
        if digest.get("Algorithm") not in ACCEPTED_DIGESTS:
            raise CapRefused(
                f"签名的摘要算法不受支持：{digest.get('Algorithm') or '未写明'}（只接受 SHA-256）",
                code="cap.signature_algorithm",
                detail=digest.get("Algorithm"),
            )
    config = SignatureConfiguration(
        require_x509=False,
        signature_methods=frozenset({ACCEPTED_SIGNATURES[algorithm]}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
        ignore_ambiguous_key_info=True,
    )
    try:
        XMLVerifier().verify(data, x509_cert=load_certificate(certificate_pem), expect_config=config)
    except (SignXMLException, ValueError) as exc:
        raise CapRefused(
            "数字签名验证失败（内容被改动，或不是这个来源的证书签的）",
            code="cap.signature",
            detail=f"{type(exc).__name__}: {exc}",
        ) from None
