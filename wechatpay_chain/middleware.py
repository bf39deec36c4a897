"""aiohttp client middlewares: sign every request, verify every 2xx response.

They work on any ``aiohttp.ClientSession`` (aiohttp >= 3.12)::

    async with aiohttp.ClientSession(middlewares=(SigningMiddleware(signer),
                                                  VerifyingMiddleware(verifier))) as session:
        ...

Order matters: signing wraps verifying, so that a retry placed before signing re-signs
each attempt and every attempt's answer is verified.
"""

from __future__ import annotations

import re

import attrs
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from .signing import Signer
from .verifying import Verifier

__all__ = ["SigningMiddleware", "VerifyingMiddleware", "is_unsigned_download"]

# Endpoints whose 2xx answer is a file stream that WeChat Pay does not sign (PROTOCOL.md
# section 2.5). Matched at the end of the path so that a base URL with a path prefix works.
_UNSIGNED_DOWNLOADS = re.compile(
    r"(?:/v3/billdownload/file"
    r"|/v3/transferdownload/(?:elecvoucherfile|signfile)"
    r"|/v3/new-tax-control-fapiao/download"
    r"|/(?:hk/)?v3/statements|/v3/global/statements"
    r"|/v3/(?:global/)?merchant-service/images/(?!upload$)[^/]+)$"
)


def is_unsigned_download(method: str, path: str) -> bool:
    """Whether ``method path`` is one of the documented unsigned download endpoints."""
    return method == "GET" and _UNSIGNED_DOWNLOADS.search(path) is not None


@attrs.frozen
class SigningMiddleware:
    """Adds ``Authorization`` over the request target and body exactly as they are sent."""

    signer: Signer

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        body = b"" if isinstance(request.body, bytes) else await request.body.as_bytes()
        request.headers["Authorization"] = self.signer.authorization(
            request.method, request.url.raw_path_qs, body
        )
        return await handler(request)


@attrs.frozen
class VerifyingMiddleware:
    """Reads and verifies every 2xx body before anything above it sees a byte.

    A failure raises a :class:`~wechatpay_chain.errors.VerificationError` and releases the
    connection; nothing unverified is returned. Non-2xx answers pass through unverified (they
    are errors either way), and so do the unsigned downloads.
    """

    verifier: Verifier

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)
        if not 200 <= response.status < 300 or is_unsigned_download(
            request.method, request.url.raw_path
        ):
            return response
        try:
            body = await response.read()
            self.verifier.verify(response.headers, body)
        except BaseException:
            response.release()
            raise
        return response
