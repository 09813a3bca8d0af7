"""`update`: the same commit, champion, data and settings make the same update key; its fine-tuning rate is a
tenth of the rate the original training used."""

from __future__ import annotations

from steps.settings import UpdateConfig
from steps.update import original_step_size, update_key

NAME = "pets"


def test_the_same_commit_champion_data_and_settings_make_the_same_update_key_whatever_the_time_range():
    config = UpdateConfig(new_data="feedback")
    key = update_key(config, "1", "digest", "commit")
    assert update_key(UpdateConfig(new_data="feedback", since="2026-11-29"), "1", "digest", "commit") == key
    assert update_key(UpdateConfig(new_data="feedback", epochs=5), "1", "digest", "commit") != key
    for changed in (("2", "digest", "commit"), ("1", "other", "commit"), ("1", "digest", "other")):
        assert update_key(config, *changed) != key, changed


def test_the_original_rate_is_the_one_its_training_used_auto_worked_out_as_it_was():
    assert original_step_size({"learning_rate": "0.05"}) == 0.05
    assert original_step_size({"learning_rate": "auto", "architecture": "mobilenetv2", "base_model": "''"}) == 0.01
    assert original_step_size({"learning_rate": "auto", "architecture": "cnn"}) == 0.001
    assert (
        original_step_size({"learning_rate": "auto", "architecture": "mobilenetv2", "base_model": "m.keras"}) == 0.001
    )
    assert original_step_size({}) == 0.001  # runs from before the parameter was logged
    assert UpdateConfig(new_data="feedback").fine_tuning_rate(0.01) == 0.001
