"""The fake server's WeChat Pay keys: the public key, platform certificates, or both.

Modes (PROTOCOL.md section 6): ``public_key`` (new merchants: ``/v3/certificates`` answers
404), ``certificates`` (older merchants), ``both`` (the migration). An answer is signed with
the key the request's ``Wechatpay-Serial`` names when the server holds it, else with the
public key (``public_key`` mode) or the newest certificate.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .._wire import CHINA_TIME
from ..crypto import aes_gcm_encrypt
from ..keys import certificate_serial
from ..verifying import same_serial
from .keypairs import generate_private_key
from .signer import WeChatPaySigner

__all__ = ["KeyMode", "PlatformCertificate", "WeChatPayKeys"]

KeyMode = Literal["public_key", "certificates", "both"]
_FIVE_YEARS = datetime.timedelta(days=5 * 365)


@attrs.frozen
class PlatformCertificate:
    key: rsa.RSAPrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate = attrs.field(repr=False)

    @property
    def serial(self) -> str:
        return certificate_serial(self.certificate)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def make_certificate(
    key: rsa.RSAPrivateKey, not_before: datetime.datetime, not_after: datetime.datetime
) -> x509.Certificate:
    """A self-signed platform certificate, as far as a client can tell one."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com (fake)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "WeChat Pay fake platform certificate"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(20), "big") >> 1)  # positive, 159 bits
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


@attrs.define
class WeChatPayKeys:
    """The keys the fake WeChat Pay signs with, and the certificates it hands out."""

    mode: KeyMode
    public_key: rsa.RSAPrivateKey = attrs.field(repr=False)
    public_key_id: str
    clock: Callable[[], float]
    certificates: list[PlatformCertificate] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("public_key", "certificates", "both"):
            raise ValueError(
                f"mode: expected 'public_key', 'certificates' or 'both'; got {self.mode!r}"
            )
        if self.mode != "public_key" and not self.certificates:
            # The first certificate reuses the public key's pair: generating keys is slow,
            # and a client tells keys apart by serial.
            self.add_certificate(key=self.public_key)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(self.clock()), datetime.timezone.utc)

    def add_certificate(
        self,
        *,
        key: rsa.RSAPrivateKey | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> PlatformCertificate:
        now = self._now()
        signing_key = key or generate_private_key()
        certificate = make_certificate(
            signing_key,
            not_before or now - datetime.timedelta(hours=1),
            not_after or now + _FIVE_YEARS,
        )
        platform = PlatformCertificate(signing_key, certificate)
        self.certificates.append(platform)
        return platform

    def current(self) -> list[PlatformCertificate]:
        """Certificates valid now, newest last."""
        now = self._now()
        valid = [
            platform
            for platform in self.certificates
            if platform.certificate.not_valid_before_utc
            <= now
            <= platform.certificate.not_valid_after_utc
        ]
        return sorted(valid, key=lambda platform: platform.certificate.not_valid_before_utc)

    def knows(self, serial: str) -> bool:
        if self.mode != "certificates" and same_serial(serial, self.public_key_id):
            return True
        return any(same_serial(serial, platform.serial) for platform in self.certificates)

    def signer(self, requested: str | None = None) -> WeChatPaySigner:
        """Who signs an answer to a request that named ``requested`` in ``Wechatpay-Serial``."""
        if requested:
            if self.mode != "certificates" and same_serial(requested, self.public_key_id):
                return WeChatPaySigner(self.public_key, self.public_key_id, self.clock)
            for platform in self.certificates:
                if same_serial(requested, platform.serial):
                    return WeChatPaySigner(platform.key, platform.serial, self.clock)
        current = self.current()
        if self.mode == "public_key" or not current:
            return WeChatPaySigner(self.public_key, self.public_key_id, self.clock)
        return WeChatPaySigner(current[-1].key, current[-1].serial, self.clock)

    def download(self, apiv3_key: bytes) -> dict[str, Any]:
        """The ``/v3/certificates`` answer: every certificate that has not expired."""
        data = []
        for platform in self.certificates:
            if platform.certificate.not_valid_after_utc < self._now():
                continue
            nonce = secrets.token_hex(6)
            data.append(
                {
                    "serial_no": platform.serial,
                    "effective_time": platform.certificate.not_valid_before_utc.astimezone(
                        CHINA_TIME
                    ).isoformat(),
                    "expire_time": platform.certificate.not_valid_after_utc.astimezone(
                        CHINA_TIME
                    ).isoformat(),
                    "encrypt_certificate": {
                        "algorithm": "AEAD_AES_256_GCM",
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": aes_gcm_encrypt(
                            apiv3_key,
                            nonce=nonce,
                            plaintext=platform.pem,
                            associated_data="certificate",
                        ),
                    },
                }
            )
        return {"data": data}
