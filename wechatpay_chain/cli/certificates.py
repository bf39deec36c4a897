"""``certificates download``: fetch, decrypt and verify the platform certificates into a
directory, as ``wechatpay_<serial>.pem`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..certificates import DirectoryCertificateCache
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
    wxpay = merchant.client(certificate_cache=DirectoryCertificateCache(directory))
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
        print(
            f"{serial}  valid {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC  "
            f"-> {directory / f'wechatpay_{serial}.pem'}",
            flush=True,
        )
    return EXIT_OK
