"""Fixtures shared by the moderation tests."""

from __future__ import annotations

import pytest

from knowcast.text.moderation import Moderator


@pytest.fixture(scope="module")
def mod() -> Moderator:
    """The full-lexicon moderator with a room block word and an allow word (one per test module)."""
    return Moderator(block_words=["割韭菜"], allow_words=["冰毒检测"])
