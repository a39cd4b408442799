from __future__ import annotations

import stat

import pytest

from knowcast.store import Store
from knowcast.store.models import Account, Creator
from knowcast.web.accounts import (
    authenticate,
    bootstrap_accounts,
    create_account,
    hash_password,
    verify_password,
)


def test_hash_round_trip_and_salted() -> None:
    h1, h2 = hash_password("correct horse"), hash_password("correct horse")
    assert h1 != h2 and h1.startswith("scrypt$")
    assert verify_password("correct horse", h1)
    assert not verify_password("wrong horse", h1)
    assert not verify_password("x", "garbage")
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")


def test_accounts_and_bootstrap(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'a.db'}").migrate()
    with store.sessions() as s:
        s.add(Creator(id="c9", name="x"))
        s.commit()
    out = bootstrap_accounts(store, path=tmp_path / "pw.txt")
    assert set(out) == {"admin", "creator-c9"}
    f = tmp_path / "pw.txt"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert out["admin"] in f.read_text() and out["admin"] in capsys.readouterr().err
    assert bootstrap_accounts(store, path=tmp_path / "again.txt") == {}  # second run: nothing new
    with store.sessions() as s:
        info = authenticate(s, "creator-c9", out["creator-c9"])
        assert info is not None and info.role == "creator" and info.creator_id == "c9"
        assert authenticate(s, "admin", "nope-nope") is None
        assert authenticate(s, "nobody", "whatever") is None
        with pytest.raises(ValueError, match="creator_id: unknown"):
            create_account(s, "c", "password1", "creator", creator_id="missing")
        with pytest.raises(ValueError, match="role"):
            create_account(s, "c", "password1", "root")
        with pytest.raises(ValueError, match="taken"):
            create_account(s, "admin", "password1", "analyst")
        assert s.query(Account).count() == 2
    store.dispose()
