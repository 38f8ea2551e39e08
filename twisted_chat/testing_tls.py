# Copyright (c) 2026 twisted-chat developers. Licensed under the MIT license.
"""
TLS material for tests and benchmarks: a throwaway certificate and a ClientHello.

The tests (``tests/test_tcp.py``, ``test_integration.py``, ``test_abuse.py``)
and ``bench/abuse.py`` each need an ``ssl:`` listener and, for the stalled
handshake cases, the first flight a real client sends; they import both from
here so there is one recipe to keep working when ``cryptography`` moves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["client_hello", "self_signed_pem"]


def self_signed_pem() -> bytes:
    """A self-signed key and certificate for ``localhost``, in one PEM.

    The one PEM is both ``privateKey=`` and ``certKey=`` of an ``ssl:``
    endpoint, and a client's trust root (the subject alternative name lets
    ``optionsForClientTLS("localhost", ...)`` verify it).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + certificate.public_bytes(serialization.Encoding.PEM)


def client_hello() -> bytes:
    """A real TLS client's first flight (its ClientHello), made in memory.

    Half of it is how a test or benchmark stalls a handshake the server has
    really started, rather than one it never sees.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
