"""The merchant's client certificate (mutual TLS for the APIv2 calls that need it).

``client_cert`` is ``apiclient_cert.pem`` (a path, PEM text or bytes; its key is the client's
``private_key``) or ``apiclient_cert.p12`` (a path or bytes; the password is the merchant id
unless told otherwise), so that a v2-only merchant configures only ``mchid``, ``apiv2_key``
and the ``.p12``: the certificate, the key and the serial all come from it.

The TLS context is the client's own, built per client: a user's ``ssl_context`` is read (the
CA certificates it trusts, its protocol bounds), never changed, so two merchants may share
one. Limitation: a context that trusts a ``capath`` directory loads those certificates
lazily, and ``SSLContext.get_ca_certs`` cannot list them; load them with ``cafile`` or
``cadata``, or pass no ``ssl_context`` to use the system's store. Python's ``ssl`` loads a
certificate chain from files only, so the key is written to a file of a private temporary
directory encrypted under a random one-time password, loaded, and deleted at once.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
import tempfile
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from .errors import ConfigError
from .keys import KeySource, _read_source, certificate_serial, load_private_key

__all__ = ["ClientCertSource", "ClientCertificate", "client_ssl_context", "load_client_cert"]

ClientCertSource = str | bytes | os.PathLike[str]
# A key in the same PEM as the certificate (some merchants keep them together).
_KEY_BLOCK = re.compile(
    rb"-----BEGIN (RSA )?PRIVATE KEY-----.+?-----END (RSA )?PRIVATE KEY-----", re.S
)


@attrs.frozen
class ClientCertificate:
    """The merchant API certificate, its private key and its serial (upper-case hex)."""

    certificate: x509.Certificate = attrs.field(repr=False)
    private_key: rsa.RSAPrivateKey = attrs.field(repr=False)
    serial: str
    #: Intermediate certificates that came with a ``.p12``, sent after the certificate.
    chain: tuple[x509.Certificate, ...] = attrs.field(default=(), repr=False)


def _from_pkcs12(data: bytes, password: str | bytes | None, mchid: str) -> ClientCertificate:
    secret = password if password is not None else mchid
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    try:
        key, certificate, extra = pkcs12.load_key_and_certificates(data, secret_bytes)
    except ValueError:
        told = "client_cert_password" if password is not None else "the merchant id (the default)"
        raise ConfigError(
            f"client_cert: the PKCS#12 file does not open with {told}: a wrong password, or "
            "not a PKCS#12 file (an old .p12 with RC2 may need converting to PEM with "
            "'openssl pkcs12 -legacy')"
        ) from None
    if certificate is None or key is None:
        raise ConfigError("client_cert: the PKCS#12 file lacks the certificate or its key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("client_cert: the PKCS#12 key is not an RSA key")
    return ClientCertificate(certificate, key, certificate_serial(certificate), tuple(extra))


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_client_cert(
    client_cert: ClientCertSource,
    *,
    mchid: str,
    private_key: KeySource | None = None,
    password: str | bytes | None = None,
) -> ClientCertificate:
    """Load ``client_cert`` (PEM certificate or PKCS#12) as a :class:`ClientCertificate`.

    A PEM certificate takes its key from ``private_key`` (or from a key block in the same
    PEM); a PKCS#12 file carries its own key and opens with ``password``, by default the
    merchant id. A key that is not the certificate's, or a wrong password, is a
    :class:`~wechatpay_chain.errors.ConfigError` that never repeats the password.
    """
    data, origin = _read_source(client_cert, "client_cert")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        try:
            certificates = [x509.load_der_x509_certificate(data)]
        except ValueError:
            certificates = []
    else:
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ConfigError(
                f"client_cert: the PEM certificate does not load ({origin})"
            ) from None
    if not certificates:
        loaded = _from_pkcs12(data, password, mchid)
    else:
        if private_key is None:
            block = _KEY_BLOCK.search(data)
            if block is None:
                raise ConfigError(
                    "client_cert: a PEM certificate needs its private key (private_key=)"
                )
            private_key = block.group()
        key = load_private_key(private_key)
        certificate = certificates[0]
        loaded = ClientCertificate(
            certificate, key, certificate_serial(certificate), tuple(certificates[1:])
        )
    if _spki(loaded.certificate.public_key()) != _spki(loaded.private_key.public_key()):
        raise ConfigError("client_cert: the private key is not the certificate's key")
    return loaded


def _new_context(trust: ssl.SSLContext | None) -> ssl.SSLContext:
    if trust is None:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if trust.verify_mode != ssl.CERT_REQUIRED or not trust.check_hostname:
        raise ConfigError(
            "ssl_context: a context that does not verify the server (verify_mode CERT_REQUIRED "
            "and check_hostname) cannot carry the client certificate"
        )
    trusted = trust.get_ca_certs(binary_form=True)
    if not trusted:
        raise ConfigError(
            "ssl_context: it lists no CA certificate (a capath is loaded lazily and cannot be "
            "read back): load the CAs with cafile= or cadata=, or pass no ssl_context"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=b"".join(trusted))
    context.minimum_version = trust.minimum_version
    context.maximum_version = trust.maximum_version
    context.verify_flags = trust.verify_flags
    return context


def client_ssl_context(
    client_cert: ClientCertificate, ssl_context: ssl.SSLContext | None = None
) -> ssl.SSLContext:
    """A new ``SSLContext`` that presents ``client_cert`` and trusts what ``ssl_context``
    trusts (the system's store when it is ``None``). ``ssl_context`` is not changed."""
    context = _new_context(ssl_context)
    one_time = secrets.token_bytes(32)
    key_pem = client_cert.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    chain_pem = b"".join(
        certificate.public_bytes(serialization.Encoding.PEM)
        for certificate in (client_cert.certificate, *client_cert.chain)
    )
    # A directory only this user can read, and the key in it encrypted anyway; deleted as soon
    # as OpenSSL has read it.
    with tempfile.TemporaryDirectory(prefix="wechatpay-") as directory:
        path = Path(directory) / "client.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(chain_pem + key_pem)
            context.load_cert_chain(path, password=one_time)
        finally:
            path.unlink(missing_ok=True)
    return context
