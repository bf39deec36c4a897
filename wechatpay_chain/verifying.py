"""Verifying what WeChat Pay sends: the serial -> key store and the Verifier.

The rules (PROTOCOL.md section 2): the four ``Wechatpay-*`` headers present, the timestamp
within 300 s of now, the serial known, and RSA-SHA256 valid over
``timestamp\\nnonce\\nbody\\n`` computed on the body's bytes exactly as received.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
import time
from collections.abc import Callable, Iterator, Mapping

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from multidict import CIMultiDict, CIMultiDictProxy

from ._wire import response_message
from .errors import (
    ConfigError,
    MissingSignatureHeaderError,
    ProbeSignatureError,
    SignatureMismatchError,
    TimestampSkewError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
)
from .keys import KeySource, certificate_serial, load_verification_key
from .signing import AUTHORIZATION_SCHEME

__all__ = [
    "MAX_CLOCK_SKEW",
    "PROBE_PREFIX",
    "PUBLIC_KEY_ID_PREFIX",
    "PublicKeyStore",
    "Verifier",
    "same_serial",
]

#: Seconds between ``Wechatpay-Timestamp`` and now beyond which a message is refused.
MAX_CLOCK_SKEW = 300
#: WeChat Pay's deliberately wrong signatures start with this (PROTOCOL.md section 2.6).
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_UNKNOWN = object()  # PublicKeyStore's preferred serial, before it is worked out
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_REQUIRED_HEADERS = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
)


def _normalise_serial(serial: str) -> str:
    # Certificate serials are hexadecimal numbers: compared case-insensitively and without
    # leading zeros (one side may print whole bytes, the other not). Public-key IDs
    # (``PUB_KEY_ID_...``) are upper-case already, so upper-casing them is safe.
    text = serial.strip().upper()
    if text and all(character in "0123456789ABCDEF" for character in text):
        return text.lstrip("0") or "0"
    return text


def same_serial(one: str, other: str) -> bool:
    """Whether two spellings name the same certificate serial or public-key ID."""
    return bool(one.strip()) and _normalise_serial(one) == _normalise_serial(other)


@attrs.frozen
class _Entry:
    serial: str  # as configured, upper-cased: what goes back in the Wechatpay-Serial header
    key: rsa.RSAPublicKey = attrs.field(repr=False)
    not_after: datetime.datetime | None = None  # platform certificates expire; public keys do not


class PublicKeyStore(Mapping[str, rsa.RSAPublicKey]):
    """The WeChat Pay keys a client trusts, by serial or public-key ID.

    Keys come from the ``public_keys`` configuration (a ``PUB_KEY_ID_...`` and/or platform
    certificate serials) and from downloaded platform certificates; both kinds may be held
    at once during the migration period, and several certificates during a rotation.
    """

    def __init__(
        self,
        keys: Mapping[str, KeySource] | None = None,
        *,
        merchant_key: rsa.RSAPublicKey | None = None,
    ) -> None:
        """``keys`` maps a serial or ``PUB_KEY_ID_...`` to a key or certificate.

        ``merchant_key`` is the merchant's own API public key, when known: a WeChat Pay key
        equal to it, configured now or added later, is a ``ConfigError`` (a mix-up of
        ``apiclient_key.pem``'s key with ``pub_key.pem`` that would otherwise verify nothing).
        """
        if keys is not None and not isinstance(keys, Mapping):
            hint = (
                " (one path or PEM? write {'PUB_KEY_ID_...': it})"
                if isinstance(keys, (str, bytes, os.PathLike))
                else ""
            )
            raise ConfigError(
                "public_keys: expected a mapping of serial or PUB_KEY_ID_... to a WeChat Pay "
                f"public key or certificate; got a {type(keys).__name__}{hint}"
            )
        if merchant_key is not None and not isinstance(merchant_key, rsa.RSAPublicKey):
            raise ConfigError(
                f"merchant_key: expected an RSA public key; got a {type(merchant_key).__name__}"
            )
        self._merchant = None if merchant_key is None else merchant_key.public_numbers()
        self._keys: dict[str, _Entry] = {}
        self._preferred: str | object | None = _UNKNOWN
        for serial, source in (keys or {}).items():
            self.add(serial, source)

    def add(self, serial: str, source: KeySource) -> None:
        """Trust ``source`` (a public key or certificate) for messages naming ``serial``."""
        if not isinstance(serial, str) or not serial.strip():
            raise ConfigError(
                "public_keys: each key needs its serial or PUB_KEY_ID_... as a non-empty str"
            )
        not_after = source.not_valid_after_utc if isinstance(source, x509.Certificate) else None
        key = load_verification_key(source)
        if self._merchant is not None and key.public_numbers() == self._merchant:
            raise ConfigError(
                f"public_keys[{serial.strip()[:64]!r}] is the merchant's own API key, not a "
                "WeChat Pay key: use the WeChat Pay public key (pub_key.pem) or a platform "
                "certificate"
            )
        self._keys[_normalise_serial(serial)] = _Entry(serial.strip().upper(), key, not_after)
        self._preferred = _UNKNOWN

    def add_certificate(self, certificate: x509.Certificate) -> str:
        """Trust a platform certificate under its own serial, until it expires; returns the serial."""
        serial = certificate_serial(certificate)
        self.add(serial, certificate)
        return serial

    def prune(self, now: datetime.datetime) -> list[str]:
        """Forget certificates that expired before ``now``; returns their serials."""
        gone = [
            name
            for name, entry in self._keys.items()
            if entry.not_after is not None and entry.not_after < now
        ]
        if gone:
            self._preferred = _UNKNOWN
        return [self._keys.pop(name).serial for name in gone]

    def __getitem__(self, serial: str) -> rsa.RSAPublicKey:
        return self._keys[_normalise_serial(serial)].key

    def get(self, serial: str, default: rsa.RSAPublicKey | None = None) -> rsa.RSAPublicKey | None:  # type: ignore[override]
        # Answers name a key as it was configured, usually already in normal form.
        entry = self._keys.get(serial) or self._keys.get(_normalise_serial(serial))
        return default if entry is None else entry.key

    def __contains__(self, serial: object) -> bool:
        return isinstance(serial, str) and _normalise_serial(serial) in self._keys

    def __iter__(self) -> Iterator[str]:
        return (entry.serial for entry in self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def preferred_serial(self) -> str | None:
        """The key WeChat Pay should sign with (and sensitive fields are encrypted for): the
        public-key ID when one is held, else the newest certificate."""
        # Every request names it: worked out again only when the keys change.
        if self._preferred is _UNKNOWN:
            self._preferred = self._choose_preferred()
        return self._preferred  # type: ignore[return-value]

    def _choose_preferred(self) -> str | None:
        entries = list(self._keys.values())
        for entry in entries:
            if entry.serial.startswith(PUBLIC_KEY_ID_PREFIX):
                return entry.serial
        dated = [
            (entry.not_after or _EPOCH, order, entry)
            for order, entry in enumerate(entries)
            if entry.not_after
        ]
        if dated:
            return max(dated, key=lambda item: item[:2])[
                2
            ].serial  # ties go to the one learned last
        return entries[0].serial if entries else None

    def __repr__(self) -> str:
        return f"PublicKeyStore({sorted(self)!r})"


def _as_store(keys: PublicKeyStore | Mapping[str, KeySource] | None) -> PublicKeyStore:
    return keys if isinstance(keys, PublicKeyStore) else PublicKeyStore(keys)


@attrs.frozen
class Verifier:
    """Checks ``Wechatpay-*`` signatures with the keys in ``public_keys``."""

    public_keys: PublicKeyStore = attrs.field(converter=_as_store)
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Return if ``body`` with ``headers`` is proven to come from WeChat Pay, else raise.

        Header names are matched case-insensitively. Raises a subclass of
        :class:`~wechatpay_chain.errors.VerificationError` naming what failed.
        """
        if not isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
            headers = CIMultiDict(headers)
        request_id = headers.get("Request-ID")
        timestamp_text = headers.get("Wechatpay-Timestamp", "").strip()
        nonce = headers.get("Wechatpay-Nonce", "").strip()
        signature_text = headers.get("Wechatpay-Signature", "").strip()
        serial = headers.get("Wechatpay-Serial", "").strip()
        if not (timestamp_text and nonce and signature_text and serial):
            missing = [name for name in _REQUIRED_HEADERS if not headers.get(name, "").strip()]
            raise MissingSignatureHeaderError(
                f"unsigned message: missing {', '.join(missing)}", request_id=request_id
            )
        signature_type = headers.get("Wechatpay-Signature-Type")
        if signature_type is not None and signature_type.strip() != AUTHORIZATION_SCHEME:
            raise UnsupportedSignatureTypeError(
                f"Wechatpay-Signature-Type {signature_type[:64]!r} is not {AUTHORIZATION_SCHEME}",
                request_id=request_id,
            )
        # Bounded length: int() of a huge digit string is slow, then refused by Python.
        if not (
            timestamp_text.isascii() and timestamp_text.isdigit() and len(timestamp_text) <= 12
        ):
            raise TimestampSkewError(
                f"Wechatpay-Timestamp {timestamp_text[:32]!r} is not Unix seconds",
                request_id=request_id,
            )
        skew = int(timestamp_text) - int(self.clock())
        if abs(skew) > MAX_CLOCK_SKEW:
            when = "in the future" if skew > 0 else "old"
            raise TimestampSkewError(
                f"Wechatpay-Timestamp is {abs(skew)} s {when}, beyond the {MAX_CLOCK_SKEW} s window "
                "(a replayed message, or a wrong clock here)",
                request_id=request_id,
            )
        key = self.public_keys.get(serial)
        if key is None:
            held = ", ".join(self.public_keys) or "none configured"
            raise UnknownSerialError(
                f"Wechatpay-Serial {serial[:64]!r} names no key this client holds (holds: {held})",
                request_id=request_id,
            )
        if signature_text.startswith(PROBE_PREFIX):
            raise ProbeSignatureError(
                "signature probe from WeChat Pay (Wechatpay-Signature starts with "
                f"{PROBE_PREFIX}): rejected, as a correct verifier must",
                request_id=request_id,
            )
        try:
            signature = base64.b64decode(signature_text, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureMismatchError(
                "Wechatpay-Signature is not Base64", request_id=request_id
            ) from None
        try:
            message = response_message(timestamp_text, nonce, body)
        except UnicodeEncodeError:
            raise SignatureMismatchError(
                "Wechatpay-Nonce is not text", request_id=request_id
            ) from None
        try:
            key.verify(signature, message, _PKCS1, _SHA256)
        except InvalidSignature:
            raise SignatureMismatchError(
                f"signature does not verify with key {serial} over the {len(body)}-byte body",
                request_id=request_id,
            ) from None
