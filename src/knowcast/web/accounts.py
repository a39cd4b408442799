"""Dashboard accounts: scrypt password hashes, sign-in checks and the first-run bootstrap.

Passwords are hashed with the standard library's scrypt (memory-hard, no native dependency) and a per-account
random salt; the stored form is ``scrypt$n$r$p$salt_hex$hash_hex`` so the cost can be raised later without
breaking old hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from knowcast.store.models import Account, Creator

ROLES = ("admin", "analyst", "creator")
_N, _R, _P = 2**14, 8, 1
#: Where ``bootstrap_accounts`` writes the first passwords (next to knowcast-admin-key.txt).
CREDENTIALS_FILE = "knowcast-dashboard-admin.txt"


def hash_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise ValueError("password must be a string of at least 8 characters")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
    )
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True)
class AccountInfo:
    """What a session remembers about who signed in."""

    username: str
    role: str
    creator_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_creator(self) -> bool:
        return self.role == "creator"

    def to_dict(self) -> dict[str, Any]:
        return {"u": self.username, "r": self.role, "c": self.creator_id}


def create_account(
    session: Session, username: str, password: str, role: str, creator_id: str | None = None
) -> Account:
    """Add an account (the caller commits). A creator account must name an existing creator."""
    username = (username or "").strip()
    if not username or len(username) > 64:
        raise ValueError("username: required, at most 64 characters")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "creator":
        if not creator_id:
            raise ValueError("creator_id: required for a creator account")
        if session.get(Creator, creator_id) is None:
            raise ValueError(f"creator_id: unknown creator {creator_id!r}")
    elif creator_id:
        raise ValueError("creator_id: only creator accounts have one")
    if session.scalar(select(Account).where(Account.username == username)) is not None:
        raise ValueError(f"username: {username!r} is taken")
    row = Account(username=username, password_hash=hash_password(password), role=role, creator_id=creator_id)
    session.add(row)
    session.flush()
    return row


def authenticate(session: Session, username: str, password: str) -> AccountInfo | None:
    row = session.scalar(select(Account).where(Account.username == (username or "").strip()))
    if row is None:
        # Spend the same time as a real check so unknown names are not revealed by timing.
        verify_password(password or "", f"scrypt${_N}${_R}${_P}${'00' * 16}${'00' * 32}")
        return None
    if not verify_password(password or "", row.password_hash):
        return None
    return AccountInfo(row.username, row.role, row.creator_id)


def bootstrap_accounts(store: Any, path: str | Path = CREDENTIALS_FILE) -> dict[str, str]:
    """First run: an ``admin`` account (and a creator account for the first demo creator) with random
    passwords, written to ``path`` (mode 600) and printed once to stderr. Does nothing if accounts exist.

    Returns {username: password} of the accounts it created.
    """
    created: dict[str, str] = {}
    with store.sessions() as s:
        if (s.scalar(select(func.count()).select_from(Account)) or 0) > 0:
            return created
        pw = secrets.token_urlsafe(12)
        create_account(s, "admin", pw, "admin")
        created["admin"] = pw
        first = s.scalar(select(Creator.id).order_by(Creator.id).limit(1))
        if first is not None:
            pw = secrets.token_urlsafe(12)
            create_account(s, f"creator-{first}", pw, "creator", creator_id=first)
            created[f"creator-{first}"] = pw
        s.commit()
    p = Path(path)
    p.write_text("".join(f"{u} {pw}\n" for u, pw in created.items()))
    p.chmod(0o600)
    lines = "\n".join(f"  {u}  {pw}" for u, pw in created.items())
    print(
        f"dashboard accounts created (username password), also in {p} (readable only by you):\n{lines}",
        file=sys.stderr,
    )
    return created
