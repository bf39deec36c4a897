"""``certificates download``: fetch, decrypt and verify the platform certificates into a
directory, as ``wechatpay_<serial>.pem`` files."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import DecryptionError
from ..keys import certificate_serial
from .common import EXIT_OK, Refused, add_merchant_options, existing_directory, merchant_from

__all__ = ["add_certificates_command"]


def add_certificates_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    certificates = commands.add_parser("certificates", help="WeChat Pay platform certificates")
    actions = certificates.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser(
        "download",
        help="download, decrypt and verify the platform certificates into a directory",
        description="Writes wechatpay_<serial>.pem for each verified certificate and prints its "
        "serial and validity. The APIv3 key decrypts them: it is read from the environment "
        "variable --apiv3-key-env names, or asked for on a terminal.",
    )
    download.add_argument(
        "--output", required=True, metavar="DIR", help="an existing directory for the .pem files"
    )
    add_merchant_options(download)
    download.set_defaults(run=download_certificates)


async def download_certificates(arguments: argparse.Namespace) -> int:
    directory = existing_directory("--output", Path(arguments.output))
    merchant = merchant_from(arguments, needs_apiv3_key=True)
    wxpay = merchant.client()
    manager = wxpay.certificates
    if manager is None:  # pragma: no cover - an APIv3 key was given, so certificates are managed
        raise Refused("platform certificates are not managed for this configuration")
    async with wxpay:
        try:
            await manager.refresh()
        except DecryptionError:
            raise Refused("the certificates did not decrypt: is the APIv3 key right?") from None
    if manager.mode == "public_key_only":
        raise Refused(
            "this merchant has no platform certificates (404 RESOURCE_NOT_EXISTS): it verifies "
            "with the WeChat Pay public key from the merchant platform (API security) instead"
        )
    for certificate in manager.downloaded:
        serial = certificate_serial(certificate)
        try:
            _write_pem(directory, serial, certificate)
        except OSError as error:
            raise Refused(f"cannot write to {directory}: {error.strerror}") from None
        print(
            f"{serial}  valid {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC  "
            f"-> {directory / f'wechatpay_{serial}.pem'}",
            flush=True,
        )
    return EXIT_OK


def _write_pem(directory: Path, serial: str, certificate: x509.Certificate) -> None:
    """``wechatpay_<serial>.pem``, written to a temporary name and renamed, so that a reader
    never sees half of one. Plain PEM, for people and other tools: a client's own cache is
    :class:`~wechatpay_chain.certificates.DirectoryCertificateCache`, which keeps the
    certificates encrypted as WeChat Pay sent them."""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".wechatpay_", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(certificate.public_bytes(serialization.Encoding.PEM))
        os.chmod(temporary, 0o644)  # a certificate is public; mkstemp made it 0600
        Path(temporary).replace(directory / f"wechatpay_{serial}.pem")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
