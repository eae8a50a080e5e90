"""gankit.latent.logits.sigmoid: one numerically stable sigmoid."""
import warnings

import numpy as np

from gankit.latent.logits import sigmoid


def test_matches_the_textbook_formula_where_it_is_safe():
    x = np.random.default_rng(0).uniform(-30, 30, size=(64, 7)).astype(np.float32)
    p = sigmoid(x)
    assert p.dtype == np.float64 and p.shape == x.shape
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-13)
    np.testing.assert_allclose(sigmoid(-x) + p, 1.0, rtol=1e-13)      # sigma(-x) = 1 - sigma(x)
    assert sigmoid(0.0) == 0.5 and sigmoid(0.0).shape == ()


def test_large_logits_give_no_warning_and_keep_tiny_probabilities():
    x = np.array([-1e308, -1000.0, -740.0, -50.0, 50.0, 1000.0, 1e308, np.inf, -np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # an overflow warning fails the test
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
            p = sigmoid(x)
    assert np.all((p >= 0) & (p <= 1))
    assert p[0] == 0 and p[-1] == 0 and p[-2] == 1 and p[5] == 1
    assert p[3] > 0 and abs(p[3] / np.exp(-50.0) - 1) < 1e-12     # relative precision kept
    assert 0 < p[2] < 1e-320                     # subnormal, not 0 (tanh's form gives 0 here)
    assert np.isnan(sigmoid(np.nan))
