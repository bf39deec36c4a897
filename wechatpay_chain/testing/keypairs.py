"""Throwaway RSA keys for the fake server."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["generate_private_key"]


def generate_private_key() -> rsa.RSAPrivateKey:
    """A throwaway RSA-2048 key, the size WeChat Pay uses."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
