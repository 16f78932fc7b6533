"""API keys: two roles, keys kept only as SHA-256 hashes, compared in constant time.

Reads (GET) need a viewer or operator key; everything that acts (run, retry, cancel, pause,
resume, acknowledge, ingestion) needs an operator key. A deployment with no keys configured
refuses both, rather than serving an open API by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request

from orchestrator.settings import ApiKey, Role, Settings

KEY_HEADER = "X-API-Key"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "orch_" + secrets.token_urlsafe(32)


def presented_key(request: Request) -> str | None:
    if key := request.headers.get(KEY_HEADER):
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def authenticate(settings: Settings, key: str | None) -> ApiKey:
    if not settings.api_keys:
        raise HTTPException(
            401,
            detail="no API keys are configured on this server; "
            "set ORCH_API_KEYS (see README, Security)",
        )
    if not key:
        raise HTTPException(
            401,
            detail=f"missing API key: send it as {KEY_HEADER} or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(key)
    found: ApiKey | None = None
    for candidate in settings.api_keys:  # no early exit: every key is compared
        if hmac.compare_digest(candidate.sha256, digest):
            found = candidate
    if found is None:
        raise HTTPException(401, detail="invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return found


def authorize(request: Request) -> ApiKey:
    """Router dependency: reads need any key, everything else an operator key."""
    key = authenticate(request.app.state.settings, presented_key(request))
    if request.method not in READ_METHODS and key.role is not Role.OPERATOR:
        raise HTTPException(
            403,
            detail=f"{request.method} {request.url.path} needs the "
            f"operator role; key {key.name!r} is a {key.role.value}",
        )
    request.state.api_key = key
    return key
