"""`update`: the same commit, champion, data and settings make the same update key."""

from __future__ import annotations

from steps.settings import UpdateConfig
from steps.update import update_key

NAME = "pets"


def test_the_same_commit_champion_data_and_settings_make_the_same_update_key_whatever_the_time_range():
    config = UpdateConfig(new_data="feedback")
    key = update_key(config, "1", "digest", "commit")
    assert update_key(UpdateConfig(new_data="feedback", since="2026-11-29"), "1", "digest", "commit") == key
    assert update_key(UpdateConfig(new_data="feedback", epochs=5), "1", "digest", "commit") != key
    for changed in (("2", "digest", "commit"), ("1", "other", "commit"), ("1", "digest", "other")):
        assert update_key(config, *changed) != key, changed
