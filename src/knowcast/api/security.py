"""API keys: random secrets shown once, stored as SHA-256 hashes, with scopes (ingest, read, admin)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from knowcast.domain import Scope
from knowcast.store.models import ApiKey

SCOPES = frozenset(s.value for s in Scope)
KEY_PREFIX = "kc_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and scopes (admin implies every scope)."""

    key_id: int | None
    name: str
    scopes: frozenset[str]
    creator_id: str | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is never stored or shown again."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ValueError(f"unknown scope(s) {bad or scopes}; expected some of {', '.join(sorted(SCOPES))}")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    row = ApiKey(name=name, prefix=prefix, key_hash=hash_key(secret), scopes=sorted(set(scopes)))
    session.add(row)
    session.flush()
    return row, secret


def verify_api_key(session: Session, secret: str) -> ApiKey | None:
    if not secret.startswith(KEY_PREFIX) or secret.count("_") < 2:
        return None
    prefix = secret[len(KEY_PREFIX) :].split("_", 1)[0]
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, hash_key(secret)):
        return None
    return row


def revoke_api_key(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked_at = datetime.now(UTC)
    return True
