"""A throwaway certificate authority for tests: a server certificate for 127.0.0.1 and
merchant API (client) certificates, as PEM or PKCS#12, made in memory with ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import tempfile
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keypairs import generate_private_key

__all__ = ["IssuedCertificate", "TestCA"]


@attrs.frozen
class IssuedCertificate:
    """A certificate and its key, with the PEM and PKCS#12 forms WeChat Pay hands out."""

    certificate: x509.Certificate = attrs.field(repr=False)
    private_key: rsa.RSAPrivateKey = attrs.field(repr=False)

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "X")

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pkcs12(self, password: str) -> bytes:
        """``apiclient_cert.p12``: the certificate and key under ``password``."""
        return pkcs12.serialize_key_and_certificates(
            b"apiclient",
            self.private_key,
            self.certificate,
            None,
            serialization.BestAvailableEncryption(password.encode()),
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class TestCA:
    """A CA whose certificate a test trusts; it issues server and client certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "wechatpay_chain test CA") -> None:
        self._key = generate_private_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: list[x509.GeneralName],
        key: rsa.RSAPrivateKey | None = None,
    ) -> IssuedCertificate:
        key = key if key is not None else generate_private_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(19), "big") | 1)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return IssuedCertificate(builder.sign(self._key, hashes.SHA256()), key)

    def server(self, host: str = "127.0.0.1") -> IssuedCertificate:
        """A server certificate for ``host`` (an IP address or a DNS name)."""
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        names = [name] if host == "localhost" else [name, x509.DNSName("localhost")]
        return self._issue(host, ExtendedKeyUsageOID.SERVER_AUTH, names)

    def client(self, mchid: str, key: rsa.RSAPrivateKey | None = None) -> IssuedCertificate:
        """A merchant API certificate (``apiclient_cert``) for ``mchid``, for ``key`` (the
        merchant API key) or a new one."""
        return self._issue(mchid, ExtendedKeyUsageOID.CLIENT_AUTH, [], key)

    def server_context(self, host: str = "127.0.0.1") -> ssl.SSLContext:
        """A server's TLS context for ``host`` that asks every client for a certificate and
        verifies the one it gets against this CA (a client without one still connects)."""
        issued = self.server(host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # OpenSSL reads a certificate chain from files only; a throwaway server key, in a
        # private directory removed at once.
        with tempfile.TemporaryDirectory(prefix="wechatpay-fake-") as directory:
            path = Path(directory) / "server.pem"
            path.write_bytes(issued.cert_pem + issued.key_pem)
            context.load_cert_chain(path)
        context.load_verify_locations(cadata=self.cert_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client's TLS context that trusts this CA (and nothing else)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())
