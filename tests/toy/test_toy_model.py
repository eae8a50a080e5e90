"""Cheap quality gates of the bundled toy model (the full ones: python -m gankit.train.quality)."""
import numpy as np
import pytest
import torch

from gankit.toy import toyfaces
from gankit.train.classifier import predict_logits
from gankit.train.quality import EVAL_SEED, generate
from gankit.loading.zoo import load_classifier, load_generator

# Rows per generator call: the same z and the same images as quality.generate's 500 (the z
# stream does not depend on the split, the toy's kernels round alike), 4x faster on a CPU,
# where 500 rows of activations spill out of the caches.
GEN_BATCH = 50


@pytest.fixture(scope="module")
def classifier():
    return load_classifier("toy")


@pytest.fixture(scope="module")
def generator():
    return load_generator("toy")


def test_classifier_accuracy_on_held_out_renders(classifier):
    assert classifier.attribute_names == list(toyfaces.ATTRIBUTE_NAMES)
    images, factors = toyfaces.render_dataset(1000, EVAL_SEED, 32)
    pred = predict_logits(classifier, images) > 0
    acc = dict(zip(classifier.attribute_names, (pred == toyfaces.label_matrix(factors)).mean(0)))
    assert acc["eyeglasses"] >= 0.97            # the binary attribute: the gate
    assert min(acc.values()) >= 0.95, acc       # continuous ones: ambiguous only near threshold


@pytest.fixture(scope="module")
def generated(generator):
    """500 samples (seed 7): the faces test's, and the first quarter of the rate gate's."""
    return generate(generator, 500, seed=7, batch_size=GEN_BATCH)


def test_generator_makes_toy_faces(generator, classifier, generated):
    assert (generator.img_resolution, generator.num_ws, generator.w_dim) == (32, 8, 128)
    images, w = generated
    assert images.shape == (500, 32, 32, 3) and w.shape == (500, 128)
    prob = torch.sigmoid(torch.from_numpy(predict_logits(classifier, images))).numpy()
    confident = (np.maximum(prob, 1 - prob) >= 0.9).mean(0)
    assert confident.min() >= 0.8, confident    # images look like the toy world to the classifier
    rates = (prob > 0.5).mean(0)
    assert (rates > 0.1).all() and (rates < 0.9).all(), rates  # every attribute both ways


def test_truncation_zero_is_one_face(generator):
    images, _ = generate(generator, 4, seed=0, psi=0.0)
    assert np.abs(images.astype(int) - images[:1].astype(int)).max() <= 1


@pytest.mark.slow
def test_generated_rates_are_the_renders_rates(generator, classifier, generated):
    """The rate gate on 2,000 samples: 0.05 plus three standard errors of a rate (0.034).
    The faces test's 500 (seed 7) and 1,500 more (seed 11): independent draws either way."""
    more = generate(generator, 1500, seed=11, batch_size=GEN_BATCH)[0]
    images = np.concatenate([generated[0], more])
    rates = (predict_logits(classifier, images) > 0).mean(0)
    true = toyfaces.label_matrix(toyfaces.sample_factors(20000, EVAL_SEED + 5)).mean(0)
    assert np.abs(rates - true).max() <= 0.085, dict(zip(classifier.attribute_names, rates - true))
