"""Settings refuse what cannot work before anything heavy is loaded: here, a mobilenet on images too small."""

from __future__ import annotations

import pytest

from steps.parameters import UsageError
from steps.settings import TrainConfig, UpdateConfig


@pytest.mark.parametrize("architecture", ["mobilenetv2", "mobilenetv3small"])
def test_a_mobilenet_refuses_images_under_32_px_naming_the_fix(architecture):
    config = TrainConfig(architecture=architecture)
    with pytest.raises(UsageError, match=f"{architecture} needs images of at least 32x32 px, the data's are 8x8; pass"):
        config.check_input_side(8)
    config.check_input_side(32)
    config.check_input_side(None)  # a .npz: told once it is read


def test_small_images_are_fine_for_the_small_architectures_and_for_a_base_model():
    TrainConfig(architecture="cnn").check_input_side(8)
    TrainConfig(architecture="mobilenetv2", base_model="model.keras").check_input_side(8)


def test_an_unknown_batchnorm_mode_is_refused_listing_the_valid_ones():
    with pytest.raises(ValueError, match="batchnorm='fixed' is not valid; use one of: auto, train, frozen"):
        TrainConfig(batchnorm="fixed")


def test_only_update_tunes_its_learning_rate_and_a_wrong_word_names_the_valid_ones():
    assert UpdateConfig(new_data="feedback", learning_rate="tune").fine_tuning_rate(0.01) == 0.001  # tune's centre
    with pytest.raises(UsageError, match="learning_rate must be 'auto' or a positive number, got 'tune'"):
        TrainConfig(learning_rate="tune")
    with pytest.raises(UsageError, match="learning_rate must be 'auto' or 'tune' or a positive number, got 'best'"):
        UpdateConfig(new_data="feedback", learning_rate="best")
