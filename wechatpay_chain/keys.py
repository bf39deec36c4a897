"""Loading the merchant private key, WeChat Pay public keys and X.509 certificates.

Each loader takes a path (``str`` or :class:`os.PathLike`), PEM text (``str``), PEM or DER
``bytes``, or an already loaded object, and raises :class:`~wechatpay_chain.errors.ConfigError`
naming what it expected and what it got. No message ever contains key material: a ``str``
that is neither PEM nor an existing file is described, not echoed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ConfigError

__all__ = [
    "KeySource",
    "certificate_serial",
    "load_certificate",
    "load_private_key",
    "load_public_key",
    "load_verification_key",
]

KeySource = Union[
    str, bytes, "os.PathLike[str]", rsa.RSAPrivateKey, rsa.RSAPublicKey, x509.Certificate
]

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# Names that look like a key file's path are safe to repeat in an error; anything else in a
# str might be key material pasted without its PEM armour, so it is never echoed.
_KEY_FILE_SUFFIXES = (".pem", ".key", ".der", ".crt", ".cer", ".p8", ".pub")


def _describe_pem(label: bytes) -> str:
    names = {
        b"PRIVATE KEY": "a PKCS#8 private key",
        b"RSA PRIVATE KEY": "a PKCS#1 private key",
        b"ENCRYPTED PRIVATE KEY": "an encrypted private key",
        b"PUBLIC KEY": "a public key",
        b"RSA PUBLIC KEY": "a PKCS#1 public key",
        b"CERTIFICATE": "an X.509 certificate",
        b"EC PRIVATE KEY": "an EC private key",
    }
    return names.get(label, "a PEM block labelled " + label.decode("ascii", "replace"))


def _read_source(source: str | bytes | os.PathLike[str], what: str) -> tuple[bytes, str]:
    """Return the bytes behind ``source`` and a description of where they came from."""
    if isinstance(source, bytes):
        return source, "bytes"
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"{what}: expected a path, PEM text, PEM/DER bytes or a loaded object; "
            f"got a {type(source).__name__}"
        )
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("ascii", "replace"), "PEM text"
    path = Path(source)
    shown = str(path) if str(path).lower().endswith(_KEY_FILE_SUFFIXES) else None
    try:
        is_file = "\n" not in str(path) and len(str(path)) < 4096 and path.is_file()
    except OSError:
        is_file = False
    if not is_file:
        where = (
            f"no file at {shown!r}"
            if shown
            else "a str that is neither PEM text nor an existing file"
        )
        raise ConfigError(
            f"{what}: expected a path, PEM text, PEM/DER bytes or a loaded object; got {where}"
        )
    try:
        return path.read_bytes(), f"file {path}"
    except OSError as error:
        raise ConfigError(f"{what}: cannot read {path}: {error.strerror}") from None


def _what_it_is(data: bytes) -> str:
    match = _PEM_LABEL.search(data)
    if match:
        return _describe_pem(match.group(1))
    return "data that is neither PEM nor a DER key" if data else "empty data"


def load_private_key(source: KeySource, *, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """Load an RSA private key (PKCS#8 or PKCS#1, PEM or DER), e.g. ``apiclient_key.pem``."""
    what = "private_key"
    if isinstance(source, rsa.RSAPrivateKey):
        return source
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise _wrong_object(what, "an RSA private key", source)
    data, origin = _read_source(source, what)
    key = None
    if b"-----BEGIN" in data:
        label = _PEM_LABEL.search(data)
        if label and label.group(1) not in (
            b"PRIVATE KEY",
            b"RSA PRIVATE KEY",
            b"ENCRYPTED PRIVATE KEY",
        ):
            raise ConfigError(
                f"{what}: expected an RSA private key; got {_what_it_is(data)} ({origin})"
            )
        loader = serialization.load_pem_private_key
    else:
        loader = serialization.load_der_private_key
    try:
        key = loader(data, password=password)
    except TypeError:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        state = (
            "is encrypted: pass password="
            if password is None
            else "is not encrypted: drop password="
        )
        raise ConfigError(f"{what}: the private key {state} ({origin})") from None
    except ValueError:
        if password is not None and b"ENCRYPTED" in data:
            raise ConfigError(
                f"{what}: wrong password for the encrypted private key ({origin})"
            ) from None
        if _PEM_LABEL.search(data):  # the armour says private key, the content is unreadable
            raise ConfigError(
                f"{what}: {_what_it_is(data)} whose content cannot be read: damaged or truncated ({origin})"
            ) from None
        raise ConfigError(
            f"{what}: expected an RSA private key (PEM or DER, PKCS#1 or PKCS#8); "
            f"got {_what_it_is(data)} ({origin})"
        ) from None
    except Exception:  # cryptography may raise UnsupportedAlgorithm and friends
        raise ConfigError(f"{what}: unsupported private key ({origin})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            f"{what}: expected an RSA private key; got a {type(key).__name__} ({origin})"
        )
    return key


def load_public_key(source: KeySource) -> rsa.RSAPublicKey:
    """Load an RSA public key (SPKI or PKCS#1, PEM or DER), e.g. WeChat Pay's ``pub_key.pem``."""
    what = "public key"
    if isinstance(source, rsa.RSAPublicKey):
        return source
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise _wrong_object(what, "an RSA public key", source)
    data, origin = _read_source(source, what)
    try:
        if b"-----BEGIN" in data:
            label = _PEM_LABEL.search(data)
            if label and label.group(1) not in (b"PUBLIC KEY", b"RSA PUBLIC KEY"):
                raise ValueError
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except Exception:
        raise ConfigError(
            f"{what}: expected an RSA public key (SPKI PEM or DER); got {_what_it_is(data)} ({origin})"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(
            f"{what}: expected an RSA public key; got a {type(key).__name__} ({origin})"
        )
    return key


def load_certificate(source: KeySource) -> x509.Certificate:
    """Load an X.509 certificate (PEM or DER), e.g. a WeChat Pay platform certificate."""
    what = "certificate"
    if isinstance(source, x509.Certificate):
        return source
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise _wrong_object(what, "an X.509 certificate", source)
    data, origin = _read_source(source, what)
    try:
        if b"-----BEGIN" in data:
            label = _PEM_LABEL.search(data)
            if label and label.group(1) != b"CERTIFICATE":
                raise ValueError
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except Exception:
        raise ConfigError(
            f"{what}: expected an X.509 certificate; got {_what_it_is(data)} ({origin})"
        ) from None


def load_verification_key(source: KeySource) -> rsa.RSAPublicKey:
    """Load what verifies WeChat Pay's signatures: a public key or a platform certificate."""
    if isinstance(source, x509.Certificate):
        return _certificate_public_key(source)
    if isinstance(source, rsa.RSAPublicKey):
        return source
    if not isinstance(source, (str, bytes, os.PathLike)):
        raise _wrong_object("public_keys", "a WeChat Pay public key or certificate", source)
    data, origin = _read_source(source, "public_keys")
    if b"CERTIFICATE-----" in data:
        return _certificate_public_key(load_certificate(data))
    if b"-----BEGIN" not in data:
        try:
            certificate = x509.load_der_x509_certificate(data)
        except ValueError:
            certificate = None  # not a DER certificate: perhaps a DER public key
        if certificate is not None:
            return _certificate_public_key(certificate)
    try:
        return load_public_key(data)
    except ConfigError:
        raise ConfigError(
            "public_keys: expected a WeChat Pay public key or platform certificate; "
            f"got {_what_it_is(data)} ({origin})"
        ) from None


def certificate_serial(certificate: x509.Certificate) -> str:
    """The serial as WeChat Pay writes it: the serial's bytes in upper-case hexadecimal."""
    text = format(certificate.serial_number, "X")
    # Whole bytes, as the official SDKs print it, so a leading zero nibble is kept.
    return text.zfill(len(text) + len(text) % 2)


def _certificate_public_key(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"certificate: expected an RSA certificate; got a {type(key).__name__}")
    return key


def _wrong_object(what: str, expected: str, source: object) -> ConfigError:
    if isinstance(source, (rsa.RSAPrivateKey, rsa.RSAPublicKey, x509.Certificate)):
        return ConfigError(f"{what}: expected {expected}; got {_object_kind(source)}")
    return ConfigError(
        f"{what}: expected a path, PEM text, PEM/DER bytes or {expected} object; got {_object_kind(source)}"
    )


def _object_kind(source: object) -> str:
    if isinstance(source, rsa.RSAPrivateKey):
        return "a private key"
    if isinstance(source, rsa.RSAPublicKey):
        return "a public key"
    if isinstance(source, x509.Certificate):
        return "an X.509 certificate"
    return f"a {type(source).__name__}"
