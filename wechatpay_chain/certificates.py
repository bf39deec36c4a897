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
* rotated certificates are kept until they expire, so both serials verify during a rotation;
* a :class:`CertificateCache` shares downloads between processes. It holds each certificate as
  WeChat Pay sent it, still encrypted under the APIv3 key, and every entry is decrypted again
  when loaded: an entry is trusted because it authenticates, not because a file holds it. A
  cache that cannot be read or written costs a download, never an answer.
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
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._wire import compact_json
from .crypto import aes_gcm_decrypt
from .errors import ApiError, DecryptionError, UnknownSerialError, VerificationError, WeChatPayError
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
#: A cache entry is one ``/v3/certificates`` item (about 2 KiB); anything far larger is not one.
MAX_CACHE_ENTRY = 64 * 1024
#: What a download returns before verification: status, headers, body.
Fetch = Callable[[], Awaitable[tuple[int, Mapping[str, str], bytes]]]


class CertificateError(VerificationError):
    """A downloaded or cached platform certificate is not one to trust."""


class CertificateCache(Protocol):
    """Where downloaded certificates are kept between processes.

    An entry is opaque ``bytes``: the UTF-8 JSON of one item of the ``/v3/certificates``
    answer as WeChat Pay sent it (``serial_no``, ``effective_time``, ``expire_time`` and
    ``encrypt_certificate``: the certificate still encrypted with AES-256-GCM under the
    APIv3 key). The client decrypts and checks every entry it loads, so a cache needs no
    integrity of its own: an entry that was changed, or written by anyone without the APIv3
    key, fails and is skipped with a warning. An exception from ``load`` or ``save`` is
    logged and costs a download, never a call.
    """

    def load(self) -> list[bytes]:
        """Every entry saved so far, in any order (``[]`` when there are none)."""
        ...

    def save(self, entries: Sequence[bytes]) -> None:
        """Keep these entries (one verified download's), each replacing one of the same
        ``serial_no``."""
        ...


_SERIAL_NAME = frozenset("0123456789ABCDEFabcdef")


@attrs.frozen
class DirectoryCertificateCache:
    """Certificates as ``wechatpay_<serial>.json`` files in one directory, shared by processes.

    Each file holds one :class:`CertificateCache` entry (still encrypted) and is written to a
    temporary name and renamed, so a reader never sees half of one. A name that is not a
    readable regular file (a directory, a dangling link) is skipped with a warning; the
    ``wechatpay_<serial>.pem`` files an earlier version wrote (plain PEM, trusted because a
    file held them) are no longer read: a warning names them, and the certificates are
    downloaded afresh.
    """

    directory: Path = attrs.field(converter=Path)

    def load(self) -> list[bytes]:
        if not self.directory.is_dir():
            if self.directory.exists():
                logger.warning(
                    "certificate cache %s is not a directory: nothing loaded", self.directory
                )
            return []
        old = sorted(self.directory.glob("wechatpay_*.pem"))
        if old:
            logger.warning(
                "certificate cache %s: ignoring %d plain-PEM file(s) of an older version "
                "(%s): a certificate is trusted only as WeChat Pay encrypted it, so it is "
                "downloaded afresh; delete them",
                self.directory,
                len(old),
                ", ".join(path.name for path in old[:5]),
            )
        entries: list[bytes] = []
        for path in sorted(self.directory.glob("wechatpay_*.json")):
            entry = self._read(path)
            if entry is not None:
                entries.append(entry)
        return entries

    @staticmethod
    def _read(path: Path) -> bytes | None:
        if not path.is_file():  # follows links: False for a directory or a dangling link
            logger.warning("certificate cache: skipping %s, which is not a regular file", path.name)
            return None
        try:
            with path.open("rb") as file:
                entry = file.read(MAX_CACHE_ENTRY + 1)
        except OSError as error:
            logger.warning("certificate cache: cannot read %s: %s", path.name, error.strerror)
            return None
        if len(entry) > MAX_CACHE_ENTRY:
            logger.warning(
                "certificate cache: skipping %s, larger than %d bytes", path.name, MAX_CACHE_ENTRY
            )
            return None
        return entry

    def save(self, entries: Sequence[bytes]) -> None:
        """Write each entry; raises ``OSError`` when the directory cannot be written and
        ``ValueError`` for an entry without a hexadecimal ``serial_no``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            self._write(_entry_serial(entry), entry)

    def _write(self, serial: str, entry: bytes) -> None:
        handle, temporary = tempfile.mkstemp(
            dir=self.directory, prefix=".wechatpay_", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(entry)
            Path(temporary).replace(self.directory / f"wechatpay_{serial}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise


def _entry_serial(entry: bytes) -> str:
    """The ``serial_no`` of a cache entry, checked to be safe in a file name."""
    try:
        serial = json.loads(entry)["serial_no"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ValueError("a certificate cache entry is not a /v3/certificates item") from None
    if not isinstance(serial, str) or not 0 < len(serial) <= 64 or not set(serial) <= _SERIAL_NAME:
        raise ValueError("a certificate cache entry's serial_no is not hexadecimal")
    return serial.upper()


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
    return [certificate for _, certificate in _open_download(body, cipher, now)]


def _open_download(
    body: bytes, cipher: AESGCM, now: datetime.datetime
) -> list[tuple[Mapping[str, object], x509.Certificate]]:
    """:func:`decrypt_certificates`, keeping each certificate's item (what the cache keeps)."""
    try:
        document = json.loads(body)
        items = document["data"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise CertificateError("the /v3/certificates answer has no list under 'data'") from None
    opened: list[tuple[Mapping[str, object], x509.Certificate]] = []
    refused: list[str] = []
    for item in items:
        certificate = _open_item(item, cipher, "a /v3/certificates entry")
        try:
            _check_validity(certificate, now)
        except CertificateError as error:
            refused.append(str(error))  # not trusted; the others may still be
            continue
        opened.append((item, certificate))
    if not opened:
        raise CertificateError(
            "the /v3/certificates answer holds no certificate valid now"
            + (f": {'; '.join(refused)}" if refused else "")
        )
    for reason in refused:
        logger.warning("refused a downloaded platform certificate: %s", reason)
    return opened


def _open_item(
    item: object, cipher: AESGCM, where: str, *, cached: bool = False
) -> x509.Certificate:
    """Decrypt one ``/v3/certificates`` item and check its serial (validity is the caller's)."""
    if not isinstance(item, dict) or not isinstance(item.get("encrypt_certificate"), dict):
        raise CertificateError(f"{where} has no encrypt_certificate")
    sealed = item["encrypt_certificate"]
    if sealed.get("algorithm") != "AEAD_AES_256_GCM":
        raise CertificateError(
            f"unsupported certificate encryption {str(sealed.get('algorithm'))[:32]!r}"
        )
    associated_data = str(sealed.get("associated_data", ASSOCIATED_DATA))
    if cached and associated_data != ASSOCIATED_DATA:
        # A cache entry must be what WeChat Pay encrypted as a certificate, never another
        # resource sealed under the same key.
        raise CertificateError(f"{where} was not encrypted as a certificate")
    pem = aes_gcm_decrypt(
        cipher,
        nonce=str(sealed.get("nonce", "")),
        ciphertext=str(sealed.get("ciphertext", "")),
        associated_data=associated_data,
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
    return certificate


def _open_cached(entry: object, cipher: AESGCM, now: datetime.datetime) -> x509.Certificate:
    """A cache entry's certificate, trusted only because it decrypts under the APIv3 key."""
    if not isinstance(entry, bytes):
        raise CertificateError(f"a cache entry is bytes, not {type(entry).__name__}")
    try:
        item = json.loads(entry)
    except (ValueError, RecursionError):
        hint = " (a plain PEM of an older version?)" if b"-----BEGIN" in entry[:64] else ""
        raise CertificateError(f"a cache entry is not JSON{hint}") from None
    certificate = _open_item(item, cipher, "a cache entry", cached=True)
    _check_validity(certificate, now)
    return certificate


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
        self._forget_other_loops()
        if self._background is not None:
            return
        if self._cache is not None:
            self._load_cache(self._cache)
        self._background = asyncio.get_running_loop().create_task(self._refresh_periodically())

    def _forget_other_loops(self) -> None:
        # Tasks of another loop (a parent process's, after fork; a closed loop's) never run
        # here again: waiting for one would wait for ever.
        loop = asyncio.get_running_loop()
        if self._background is not None and self._background.get_loop() is not loop:
            self._background = None
        if self._inflight is not None and self._inflight.get_loop() is not loop:
            self._inflight = None

    async def stop(self) -> None:
        tasks = [task for task in (self._background, self._inflight) if task is not None]
        self._background = self._inflight = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _load_cache(self, cache: CertificateCache) -> None:
        # Whatever goes wrong here costs a download, never the client: log and go on.
        try:
            entries = cache.load()
        except Exception as error:  # any cache, any failure: logged, then downloaded
            logger.warning(
                "could not read the platform certificate cache, downloading afresh: %s",
                _describe(error),
            )
            return
        now = self._now()
        for entry in entries:
            try:
                self._store.add_certificate(_open_cached(entry, self._cipher, now))
            except (CertificateError, DecryptionError) as error:
                logger.warning(
                    "ignoring a cached platform certificate, downloading afresh: %s", error
                )
            except WeChatPayError as error:
                logger.warning("ignoring a cached platform certificate: %s", error)

    def _save_cache(self, cache: CertificateCache, entries: list[bytes]) -> None:
        # Called while an answer waits for its serial: a cache that cannot be written must
        # not turn that answer into an error.
        try:
            cache.save(entries)
        except Exception as error:  # any cache, any failure: logged only
            logger.warning(
                "could not save platform certificates to the cache: %s", _describe(error)
            )

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
        self._forget_other_loops()
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._download())
        await asyncio.shield(self._inflight)

    async def learn(self, serial: str) -> bool:
        """An answer named ``serial``: download if that may teach it; whether it is known now.
        Within ``min_interval`` of the last download it raises
        :class:`~wechatpay_chain.errors.UnknownSerialError` saying the refresh was
        rate-limited."""
        if serial in self._store:
            return True
        if self.mode == "public_key_only":
            return False
        since = time.monotonic() - self._last_download
        if (self._inflight is None or self._inflight.done()) and since < self.min_interval:
            # Downloaded moments ago: a new download would not know more, and a forger
            # naming serial after serial must not make the client download without end.
            raise UnknownSerialError(
                f"Wechatpay-Serial {serial[:64]!r} names no key this client holds, and the "
                f"platform certificates were downloaded {since:.0f} s ago: a refresh is "
                f"rate-limited to one per {self.min_interval:.0f} s (min_interval), so none "
                "was made. A certificate WeChat Pay has just issued is learnt on the first "
                "answer after that"
            )
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
            error = ApiError.from_answer(status, headers, body)
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
            raise ApiError.from_answer(status, headers, body)
        now = self._now()
        opened = _open_download(body, self._cipher, now)
        certificates = [certificate for _, certificate in opened]
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
            self._save_cache(self._cache, [_entry_bytes(item) for item, _ in opened])


def _entry_bytes(item: Mapping[str, object]) -> bytes:
    """A cache entry: the item as WeChat Pay sent it, certificate still encrypted."""
    return compact_json(item)


def _describe(error: Exception) -> str:
    # An OSError's str() has its errno and file name; other errors say what they are.
    return f"{type(error).__name__}: {error}"
