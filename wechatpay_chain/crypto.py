"""RSA-OAEP for sensitive fields and AES-256-GCM for notifications and certificates.

PROTOCOL.md section 4 (AES-GCM: the APIv3 key's 32 bytes as the key, the nonce and the
associated data as UTF-8 bytes, a 16-byte tag after the ciphertext) and section 5 (OAEP
with SHA-1 and MGF1-SHA-1, Base64).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, DecryptionError

__all__ = [
    "OAEP_MAX_PLAINTEXT",
    "aes_gcm_cipher",
    "aes_gcm_decrypt",
    "aes_gcm_encrypt",
    "apiv3_key_bytes",
    "rsa_oaep_decrypt",
    "rsa_oaep_encrypt",
]

#: The longest plaintext RSA-2048 OAEP-SHA1 can carry: 256 - 2 * 20 - 2 bytes.
OAEP_MAX_PLAINTEXT = 214

_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 - the protocol's choice


def apiv3_key_bytes(apiv3_key: str | bytes) -> bytes:
    """The APIv3 key as the AES key: its own 32 bytes, never hex- or Base64-decoded.

    A ``str`` stands for its UTF-8 bytes. Anything but exactly 32 bytes is a ``ConfigError``:
    AES would take 16 or 24 bytes as AES-128 or AES-192 without a word.
    """
    if isinstance(apiv3_key, str):
        try:
            key = apiv3_key.encode()
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 bytes at all
            raise ConfigError(
                "apiv3_key: expected the 32-byte APIv3 key; got a str that is not text"
            ) from None
    elif isinstance(apiv3_key, (bytes, bytearray, memoryview)):
        key = bytes(apiv3_key)
    else:
        raise ConfigError(
            f"apiv3_key: expected the 32-byte APIv3 key as str or bytes; got {type(apiv3_key).__name__}"
        )
    if len(key) != 32:
        raise ConfigError(
            f"apiv3_key: expected the 32-byte APIv3 key as str or bytes; got {len(key)} bytes"
        )
    return key


def aes_gcm_cipher(apiv3_key: str | bytes | AESGCM) -> AESGCM:
    """An ``AESGCM`` for the APIv3 key (checked by :func:`apiv3_key_bytes`), or the one given.

    Building one costs as much as a decryption, so a caller that decrypts often keeps it.
    """
    return apiv3_key if isinstance(apiv3_key, AESGCM) else AESGCM(apiv3_key_bytes(apiv3_key))


def aes_gcm_decrypt(
    apiv3_key: str | bytes | AESGCM, *, nonce: str, ciphertext: str, associated_data: str = ""
) -> bytes:
    """Decrypt a ``resource`` (or ``encrypt_certificate``) with the APIv3 key (or an
    ``AESGCM`` made from it, which a caller that decrypts often keeps)."""
    cipher = aes_gcm_cipher(apiv3_key)
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        return cipher.decrypt(nonce.encode(), sealed, associated_data.encode())
    except (binascii.Error, ValueError):
        raise DecryptionError("the ciphertext is not valid Base64, or the nonce is empty") from None
    except InvalidTag:
        raise DecryptionError(
            "AES-GCM authentication failed: a wrong APIv3 key, or tampered ciphertext, nonce or associated data"
        ) from None


def aes_gcm_encrypt(
    apiv3_key: str | bytes | AESGCM, *, nonce: str, plaintext: bytes, associated_data: str = ""
) -> str:
    """The inverse of :func:`aes_gcm_decrypt` (what WeChat Pay does; the fake server uses it)."""
    return base64.b64encode(
        aes_gcm_cipher(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())
    ).decode()


def rsa_oaep_encrypt(public_key: rsa.RSAPublicKey, plaintext: str) -> str:
    """Encrypt a sensitive field for WeChat Pay; raises ``ValueError`` beyond 214 bytes."""
    data = plaintext.encode()
    if len(data) > OAEP_MAX_PLAINTEXT:
        raise ValueError(
            f"a sensitive field is at most {OAEP_MAX_PLAINTEXT} bytes of UTF-8 under RSA-2048 OAEP; "
            f"this one is {len(data)}"
        )
    return base64.b64encode(public_key.encrypt(data, _OAEP)).decode()


def rsa_oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: str) -> str:
    """Decrypt a sensitive field WeChat Pay encrypted with the merchant's certificate key."""
    try:
        return private_key.decrypt(base64.b64decode(ciphertext, validate=True), _OAEP).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise DecryptionError(
            "RSA-OAEP decryption failed: not encrypted for this merchant key, or damaged"
        ) from None
