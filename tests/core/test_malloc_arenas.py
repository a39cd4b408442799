"""``limit_malloc_arenas``: the server caps glibc's malloc arenas (heap growth across thread-pool threads)."""

from __future__ import annotations

import platform
import sys

import pytest

from knowcast.api.app import limit_malloc_arenas


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs Linux with glibc"
)
def test_sets_the_cap_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limit_malloc_arenas(2) is True
    monkeypatch.setenv("KNOWCAST_MALLOC_ARENAS", "4")
    assert limit_malloc_arenas() is True


def test_zero_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limit_malloc_arenas(0) is False
    monkeypatch.setenv("KNOWCAST_MALLOC_ARENAS", "0")
    assert limit_malloc_arenas() is False
