"""The wire's constants, in one place: header names, compact JSON, the +08:00 zone, and the
message WeChat Pay signs its answers and notifications over (PROTOCOL.md sections 1 and 2).

Pure: no aiohttp, no cryptography, nothing to import but the standard library.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

__all__ = [
    "CHINA_TIME",
    "HEADER_NONCE",
    "HEADER_REQUEST_ID",
    "HEADER_SERIAL",
    "HEADER_SIGNATURE",
    "HEADER_SIGNATURE_TYPE",
    "HEADER_TIMESTAMP",
    "compact_json",
    "response_message",
]

HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"
HEADER_SIGNATURE_TYPE = "Wechatpay-Signature-Type"
HEADER_REQUEST_ID = "Request-ID"

#: WeChat Pay's times are written in China Standard Time (RFC 3339 with ``+08:00``).
CHINA_TIME = datetime.timezone(datetime.timedelta(hours=8), "CST")

# One encoder: json.dumps with options builds a new one per call. allow_nan=False, because
# NaN and Infinity are not JSON and WeChat Pay would refuse the body after it was sent.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def compact_json(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON (no spaces, non-ASCII kept): the bytes that are
    signed and sent. Raises ``ValueError`` for NaN or Infinity, ``TypeError`` for a value
    JSON cannot hold."""
    return _ENCODER.encode(document).encode()


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """``TIMESTAMP\\nNONCE\\nBODY\\n``: what WeChat Pay signs an answer or a notification over.

    The header values are encoded with ``surrogateescape``, since aiohttp hands undecodable
    header bytes over that way and those are the bytes that were signed (or not); a value
    that cannot be encoded back raises ``UnicodeEncodeError``.
    """
    head = f"{timestamp}\n{nonce}\n".encode("utf-8", "surrogateescape")
    return head + body + b"\n"
