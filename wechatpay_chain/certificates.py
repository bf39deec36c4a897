"""WeChat Pay platform certificates: download, verify, refresh, persist (PROTOCOL.md 2.3, 6).

Since late 2024 new merchants get only a WeChat Pay public key; older ones verify with
platform certificates, and many are migrating with both. One :class:`CertificateManager`
per client (no global state) handles all three:

* it downloads ``GET /v3/certificates``, decrypts each ``encrypt_certificate`` with the
  APIv3 key (associated data ``certificate``), checks each certificate's serial and validity
  period, and verifies the download itself: with the keys already held when there are any,
  otherwise with the certificates just decrypted (the bootstrap: only WeChat Pay and the
  merchant know the APIv3 key that authenticated them);
* it refreshes in the background (every 12 hours, with jitter) and on demand when an answer
  or a notification names a serial it does not know, with one download in flight however
  many callers ask, and a minimum interval between on-demand downloads;
* ``404 RESOURCE_NOT_EXISTS`` means the merchant uses the public key: it says so once and
  stops asking;
* rotated certificates are kept until they expire, so both serials verify during a rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto import aes_gcm_decrypt
from .errors import ApiError, VerificationError, WeChatPayError
from .keys import certificate_serial
from .verifying import PublicKeyStore, Verifier, same_serial

__all__ = [
    "CERTIFICATES_TARGET",
    "CertificateCache",
    "CertificateError",
    "CertificateManager",
    "DirectoryCertificateCache",
    "decrypt_certificates",
]

logger = logging.getLogger("wechatpay_chain")

CERTIFICATES_TARGET = "/v3/certificates"
ASSOCIATED_DATA = "certificate"
#: What a download returns before verification: status, headers, body.
Fetch = Callable[[], Awaitable[tuple[int, Mapping[str, str], bytes]]]


class CertificateError(VerificationError):
    """A downloaded or cached platform certificate is not one to trust."""


class CertificateCache(Protocol):
    """Where downloaded certificates are kept between processes (PEM bytes each)."""

    def load(self) -> list[bytes]: ...

    def save(self, certificates: Sequence[bytes]) -> None: ...


@attrs.frozen
class DirectoryCertificateCache:
    """Certificates as ``wechatpay_<serial>.pem`` files in one directory, shared by processes.

    Each file is written to a temporary name and renamed, so a reader never sees half of one.
    """

    directory: Path = attrs.field(converter=Path)

    def load(self) -> list[bytes]:
        if not self.directory.is_dir():
            return []
        return [path.read_bytes() for path in sorted(self.directory.glob("wechatpay_*.pem"))]

    def save(self, certificates: Sequence[bytes]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for pem in certificates:
            serial = certificate_serial(x509.load_pem_x509_certificate(pem))
            handle, temporary = tempfile.mkstemp(
                dir=self.directory, prefix=".wechatpay_", suffix=".tmp"
            )
            with os.fdopen(handle, "wb") as file:
                file.write(pem)
            Path(temporary).replace(self.directory / f"wechatpay_{serial}.pem")


def _check_validity(certificate: x509.Certificate, now: datetime.datetime) -> None:
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise CertificateError(
            f"platform certificate {certificate_serial(certificate)} is valid from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d} to {certificate.not_valid_after_utc:%Y-%m-%d}, "
            f"not at {now:%Y-%m-%d %H:%M}"
        )


def decrypt_certificates(
    body: bytes, cipher: AESGCM, now: datetime.datetime
) -> list[x509.Certificate]:
    """The certificates of a ``/v3/certificates`` answer, decrypted and checked.

    Raises ``DecryptionError`` for a wrong APIv3 key and :class:`CertificateError` for a
    certificate whose serial does not match its ``serial_no``; a certificate outside its
    validity period is left out (and logged), and none left is an error too.
    """
    try:
        document = json.loads(body)
        items = document["data"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise CertificateError("the /v3/certificates answer has no list under 'data'") from None
    certificates: list[x509.Certificate] = []
    refused: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("encrypt_certificate"), dict):
            raise CertificateError("a /v3/certificates entry has no encrypt_certificate")
        sealed = item["encrypt_certificate"]
        if sealed.get("algorithm") != "AEAD_AES_256_GCM":
            raise CertificateError(
                f"unsupported certificate encryption {str(sealed.get('algorithm'))[:32]!r}"
            )
        pem = aes_gcm_decrypt(
            cipher,
            nonce=str(sealed.get("nonce", "")),
            ciphertext=str(sealed.get("ciphertext", "")),
            associated_data=str(sealed.get("associated_data", ASSOCIATED_DATA)),
        )
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise CertificateError(
                "a decrypted platform certificate is not a PEM X.509 certificate"
            ) from None
        if not same_serial(str(item.get("serial_no", "")), certificate_serial(certificate)):
            raise CertificateError(
                f"certificate serial {certificate_serial(certificate)} does not match serial_no "
                f"{str(item.get('serial_no'))[:64]!r}"
            )
        try:
            _check_validity(certificate, now)
        except CertificateError as error:
            refused.append(str(error))  # not trusted; the others may still be
            continue
        certificates.append(certificate)
    if not certificates:
        raise CertificateError(
            "the /v3/certificates answer holds no certificate valid now"
            + (f": {'; '.join(refused)}" if refused else "")
        )
    for reason in refused:
        logger.warning("refused a downloaded platform certificate: %s", reason)
    return certificates


class CertificateManager:
    """Keeps one client's platform certificates current; see the module docstring."""

    def __init__(
        self,
        *,
        fetch: Fetch,
        store: PublicKeyStore,
        cipher: AESGCM,
        clock: Callable[[], float] = time.time,
        interval: float = 12 * 60 * 60,
        jitter: float = 0.1,
        min_interval: float = 60.0,
        cache: CertificateCache | None = None,
    ) -> None:
        self._fetch = fetch
        self._store = store
        self._cipher = cipher
        self._clock = clock
        self.interval = interval
        self.jitter = jitter
        self.min_interval = min_interval
        self._cache = cache
        #: ``unknown`` until the first download; ``public_key_only`` after a 404.
        self.mode: Literal["unknown", "certificates", "public_key_only"] = "unknown"
        #: How many downloads were made (a test's way to see single-flight at work).
        self.downloads = 0
        #: The certificates the last successful download verified.
        self.downloaded: list[x509.Certificate] = []
        self._last_download = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self._background: asyncio.Task[None] | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not secrets

    def __repr__(self) -> str:
        return f"<CertificateManager mode={self.mode!r} serials={sorted(self._store)!r}>"

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the cache and start refreshing in the background (inside the running loop)."""
        if self._background is not None:
            return
        if self._cache is not None:
            self._load_cache(self._cache)
        self._background = asyncio.get_running_loop().create_task(self._refresh_periodically())

    async def stop(self) -> None:
        tasks = [task for task in (self._background, self._inflight) if task is not None]
        self._background = self._inflight = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _load_cache(self, cache: CertificateCache) -> None:
        now = self._now()
        for pem in cache.load():
            try:
                certificate = x509.load_pem_x509_certificate(pem)
                _check_validity(certificate, now)
            except (ValueError, CertificateError) as error:
                logger.warning("ignoring a cached platform certificate: %s", error)
                continue
            self._store.add_certificate(certificate)

    async def _refresh_periodically(self) -> None:
        while self.mode != "public_key_only":
            await asyncio.sleep(self.interval * (1 + self._rng.uniform(-self.jitter, self.jitter)))
            try:
                await self.refresh()
            except WeChatPayError as error:
                logger.warning("platform certificate refresh failed: %s", error)

    # -- downloading -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Download now, or join the download already in flight."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._download())
        await asyncio.shield(self._inflight)

    async def learn(self, serial: str) -> bool:
        """An answer named ``serial``: download if that may teach it; whether it is known now."""
        if serial in self._store:
            return True
        if self.mode == "public_key_only":
            return False
        if (self._inflight is None or self._inflight.done()) and (
            time.monotonic() - self._last_download < self.min_interval
        ):
            return False  # downloaded moments ago: a new download would not know more
        try:
            await self.refresh()
        except WeChatPayError as error:
            logger.warning(
                "could not download platform certificates to learn serial %s: %s",
                serial[:64],
                error,
            )
        return serial in self._store

    async def _download(self) -> None:
        self._last_download = time.monotonic()
        self.downloads += 1
        status, headers, body = await self._fetch()
        if status == 404:
            error = ApiError(status, body=body, headers=headers)
            if error.code in ("RESOURCE_NOT_EXISTS", "NOT_FOUND"):
                if self.mode != "public_key_only":
                    logger.info(
                        "this merchant has no platform certificates (404 %s): verifying with the "
                        "configured WeChat Pay public key, and no longer asking",
                        error.code,
                    )
                self.mode = "public_key_only"
                return
        if not 200 <= status < 300:
            raise ApiError(status, body=body, headers=headers, request_id=headers.get("Request-ID"))
        now = self._now()
        certificates = decrypt_certificates(body, self._cipher, now)
        anchor = (
            self._store
            if len(self._store)
            else PublicKeyStore({certificate_serial(c): c for c in certificates})
        )
        Verifier(anchor, clock=self._clock).verify(headers, body)
        for certificate in certificates:
            self._store.add_certificate(certificate)
        self.downloaded = certificates
        expired = self._store.prune(now)
        self.mode = "certificates"
        logger.info(
            "platform certificates: %s%s",
            ", ".join(
                f"{certificate_serial(c)} until {c.not_valid_after_utc:%Y-%m-%d}"
                for c in certificates
            ),
            f"; expired and dropped: {', '.join(expired)}" if expired else "",
        )
        if self._cache is not None:
            self._cache.save([c.public_bytes(serialization.Encoding.PEM) for c in certificates])
