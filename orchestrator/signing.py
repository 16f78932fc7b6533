"""HMAC-SHA256 signatures over request bodies, for HTTP agents and their callbacks."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Orchestrator-Signature"
PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str | None) -> bool:
    """Constant-time comparison; a missing signature never verifies."""
    return signature is not None and hmac.compare_digest(sign(body, secret), signature)
