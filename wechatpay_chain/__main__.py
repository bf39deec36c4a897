"""``python -m wechatpay_chain``: the command line."""

from .cli import main

raise SystemExit(main())
