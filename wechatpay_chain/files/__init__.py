"""Files: signed multipart media uploads, streamed downloads, and bills.

**Uploads** (PROTOCOL.md section 7). ``node.post(file=...)`` sends ``multipart/form-data``
with two parts, ``meta`` then ``file``. The ``meta`` part is a JSON string
``{"filename": ..., "sha256": ...}`` serialised once; those very bytes are what the request
signature covers (:class:`UploadPayload` carries them as ``signed_body``, which
:class:`~wechatpay_chain.middleware.SigningMiddleware` signs instead of the multipart body)
and what goes on the wire. Because the meta part comes first, the file's SHA-256 must be
known before a byte is sent:

* ``bytes`` are hashed in place;
* a path, or a seekable binary file, is read twice: once to hash it, once to send it,
  in chunks, so a large file is never held in memory;
* an async iterator (or an unseekable file) can be read only once: it is copied to a
  temporary spool (in memory up to 8 MiB, then on disk) while it is hashed, and sent from
  there.

**Downloads** (section 8). :meth:`WeChatPay.download` sends a signed ``GET`` and hands back
the open answer as a :class:`Download` to iterate or save; WeChat Pay does not sign file
answers (section 2.5). The ``Authorization`` header only ever goes to the configured WeChat
Pay hosts (the base URL and its failover host): a URL anywhere else raises
:class:`~wechatpay_chain.errors.UntrustedHostError` before anything is sent.

**Bills**. :attr:`WeChatPay.bills` applies for a trade or fund-flow bill, downloads it,
gunzips it when asked for ``GZIP``, and computes the SHA-1 of the decompressed content as it
streams; the last chunk is followed by the comparison with ``hash_value``, and a mismatch
raises :class:`~wechatpay_chain.errors.HashMismatchError`. :meth:`BillStream.save` writes to
a temporary name beside the target and renames it only once the hash matched.
:func:`parse_bill` and :class:`BillParser` read the CSV (BOM, backquoted fields, summary).
"""

from .bill_csv import BillParser, ParsedBill, parse_bill
from .bills import Bills, BillStream
from .downloads import DOWNLOAD_TIMEOUT, Download, Opening
from .uploads import ProgressCallback, Upload, UploadPayload, UploadSource

__all__ = [
    "DOWNLOAD_TIMEOUT",
    "BillParser",
    "BillStream",
    "Bills",
    "Download",
    "Opening",
    "ParsedBill",
    "ProgressCallback",
    "Upload",
    "UploadPayload",
    "UploadSource",
    "parse_bill",
]
