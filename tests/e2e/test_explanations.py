"""The explanations pass the two sanity checks an explanation method owes its users, on digits:

- model randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", 2018): a map that barely changes when
  the model's weights are replaced by random ones explains the image, not the model. Required: the Spearman
  correlation between the trained and the randomised model's maps is below 0.5 on average over 100 test images;
- deletion: occluding the 10% of pixels the map ranks highest must lower the explained class's probability more
  than occluding a random 10%, the mean difference's 95% bootstrap interval above 0.

And integrated gradients on the Keras model add up (completeness).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from steps.modeling.explain import occlude_share, occlusion_map

pytestmark = pytest.mark.e2e
IMAGES = 100
SHARE = 0.1
BOOTSTRAP = 2000


@pytest.fixture(scope="module")
def models():
    """A digits cnn trained as `train` trains it (fewer epochs) and the same network with fresh random weights,
    both as LiteRT deployables."""
    from steps.datasets.data import load_dataset
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite
    from steps.modeling.litert_runtime import LiteRTClassifier
    from steps.modeling.training import seed_everything, train
    from steps.settings import TrainConfig

    data = load_dataset("digits")
    config = TrainConfig(epochs=15)
    trained = train(config, data, build_model(config.architecture, data.input_shape, data.n_classes, config.width))
    seed_everything(7)
    randomised = build_model(config.architecture, data.input_shape, data.n_classes, config.width)
    return data, LiteRTClassifier(to_tflite(trained.model)), LiteRTClassifier(to_tflite(randomised)), trained.model


def test_maps_of_the_trained_model_do_not_survive_randomising_its_weights(models):
    data, trained, randomised, _ = models
    correlations = []
    for image in data.x_test[:IMAGES]:
        explained = occlusion_map(trained.predict_proba, image)
        random_map = occlusion_map(randomised.predict_proba, image, target=explained.target)
        correlations.append(spearmanr(explained.saliency[..., 0].ravel(), random_map.saliency[..., 0].ravel())[0])
    mean = float(np.nanmean(correlations))  # a constant map (a random model indifferent to the image) has none
    print(f"\nSpearman correlation, trained vs randomised maps, mean over {IMAGES} images: {mean:.3f}")
    assert mean < 0.5


def test_deleting_the_most_salient_pixels_costs_more_than_deleting_random_ones(models):
    data, trained, _, _ = models
    rng = np.random.default_rng(0)
    differences = []
    for image in data.x_test[:IMAGES]:
        explained = occlusion_map(trained.predict_proba, image)
        before = explained.probabilities[explained.target]
        by_saliency = occlude_share(image, explained.saliency[..., 0], SHARE)
        at_random = occlude_share(image, rng.random(image.shape[:2]), SHARE)
        after = trained.predict_proba(np.stack([by_saliency, at_random]))[:, explained.target]
        differences.append((before - after[0]) - (before - after[1]))
    differences = np.array(differences)
    means = [rng.choice(differences, len(differences)).mean() for _ in range(BOOTSTRAP)]
    low, high = np.percentile(means, [2.5, 97.5])
    print(f"\nsalient minus random deletion: mean {differences.mean():.3f}, 95% bootstrap [{low:.3f}, {high:.3f}]")
    assert low > 0


def test_integrated_gradients_add_up_to_the_change_from_the_baseline_image(models):
    """Completeness (Sundararajan et al.): the pixels' attributions sum to f(image) - f(baseline), for the Keras
    model where one exists."""
    from steps.modeling.explain_keras import integrated_gradients

    data, _, _, keras_model = models
    for image in data.x_test[:20]:
        explained = integrated_gradients(keras_model, image)
        baseline = np.broadcast_to(image.mean(axis=(0, 1)), image.shape)[np.newaxis]
        change = explained.probabilities[explained.target] - keras_model(baseline).numpy()[0, explained.target]
        assert explained.saliency.shape == image.shape
        assert explained.saliency[..., 0].sum() == pytest.approx(change, abs=0.02)
