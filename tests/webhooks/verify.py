"""Verifies webhooks with the official Standard Webhooks library
(`standardwebhooks` from PyPI): the independent check of this crate's
signatures.

Usage: verify.py < CASES
CASES is a JSON array of {"secret": "whsec_…", "payload": "<body text>",
"headers": {"webhook-id": …, "webhook-timestamp": …, "webhook-signature": …}}.
Prints one JSON line: an array with, for each case, "valid" or
"invalid: <the library's error>". Run by tests/it/webhook_signing.rs.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verdict(case: dict) -> str:
    try:
        # The body as the receiver got it: bytes, never parsed and re-serialized.
        Webhook(case["secret"]).verify(case["payload"].encode("utf-8"), case["headers"])
    except WebhookVerificationError as error:
        return f"invalid: {error}"
    return "valid"


def main() -> None:
    cases = json.load(sys.stdin)
    print(json.dumps([verdict(case) for case in cases]))


if __name__ == "__main__":
    main()
