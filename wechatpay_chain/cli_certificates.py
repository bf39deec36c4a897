"""``python -m wechatpay_chain certificates download``: fetch and verify platform certificates.

The APIv3 key comes from an environment variable or a prompt, never from the command line
(argv is visible to every user of the machine and kept in shell histories).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .certificates import CertificateError
from .client import DEFAULT_BASE_URL, WeChatPay
from .errors import ApiError, ConfigError, DecryptionError, TransportError, VerificationError
from .keys import certificate_serial

__all__ = ["add_certificates_command", "run_certificates"]


def add_certificates_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    certificates = commands.add_parser("certificates", help="WeChat Pay platform certificates")
    actions = certificates.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser(
        "download",
        help="download, decrypt and verify the platform certificates into a directory",
        description="Writes wechatpay_<serial>.pem for each verified certificate and prints its serial "
        "and validity. The APIv3 key is read from the environment variable named by --apiv3-key-env, "
        "or asked for.",
    )
    download.add_argument("--mchid", required=True, help="merchant ID")
    download.add_argument("--serial", required=True, help="merchant API certificate serial number")
    download.add_argument("--private-key", required=True, metavar="FILE", help="apiclient_key.pem")
    download.add_argument(
        "--apiv3-key-env",
        metavar="NAME",
        help="environment variable holding the APIv3 key (else a prompt)",
    )
    download.add_argument(
        "--output", required=True, metavar="DIR", help="directory for the .pem files"
    )
    download.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"default {DEFAULT_BASE_URL}"
    )


def _apiv3_key(arguments: argparse.Namespace) -> str:
    if arguments.apiv3_key_env:
        value = os.environ.get(arguments.apiv3_key_env)
        if not value:
            raise ConfigError(f"the environment variable {arguments.apiv3_key_env} is not set")
        return value
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the APIv3 key: pass --apiv3-key-env NAME")
    return getpass.getpass("APIv3 key: ")


def run_certificates(arguments: argparse.Namespace, say: Callable[[str], None]) -> int:
    try:
        return asyncio.run(_download(arguments, say))
    except ConfigError as error:
        say(f"error: {error}")
        return 2


async def _download(arguments: argparse.Namespace, say: Callable[[str], None]) -> int:
    wxpay = WeChatPay(
        arguments.mchid,
        arguments.serial,
        arguments.private_key,
        apiv3_key=_apiv3_key(arguments),
        base_url=arguments.base_url,
    )
    manager = wxpay.certificates
    if manager is None:  # pragma: no cover - an APIv3 key was given, so certificates are managed
        raise ConfigError("platform certificates are not managed for this configuration")
    async with wxpay:
        try:
            await manager.refresh()
        except DecryptionError:
            say("error: the certificates did not decrypt: is the APIv3 key right?")
            return 1
        except ApiError as error:
            if error.status == 401:
                say(
                    f"error: WeChat Pay refused the signature ({error}): check --serial and --private-key"
                )
            else:
                say(f"error: {error}")
            return 1
        except (CertificateError, VerificationError, TransportError) as error:
            say(f"error: {error}")
            return 1
    if manager.mode == "public_key_only":
        say(
            "error: this merchant has no platform certificates (404 RESOURCE_NOT_EXISTS): it verifies "
            "with the WeChat Pay public key from the merchant platform (API security) instead"
        )
        return 1
    output = Path(arguments.output)
    for certificate in manager.downloaded:
        try:
            _write_pem(output, certificate)
        except OSError as error:
            say(f"error: cannot write to {output}: {error.strerror}")
            return 1
        say(
            f"{certificate_serial(certificate)}  valid {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC  "
            f"-> {arguments.output}/wechatpay_{certificate_serial(certificate)}.pem"
        )
    return 0


def _write_pem(directory: Path, certificate: x509.Certificate) -> None:
    """``wechatpay_<serial>.pem``, written to a temporary name and renamed: a reader never
    sees half of one. Plain PEM for people and other tools; a client's own cache is
    :class:`~wechatpay_chain.certificates.DirectoryCertificateCache`."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".wechatpay_", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(certificate.public_bytes(serialization.Encoding.PEM))
        os.chmod(temporary, 0o644)  # a certificate is public; mkstemp made it 0600
        Path(temporary).replace(directory / f"wechatpay_{certificate_serial(certificate)}.pem")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
