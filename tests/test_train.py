"""Training helpers that need no Spark."""

from batch.train import monotone


def test_the_blend_weight_never_grows_with_the_users_own_ratings():
    assert monotone([0.1, 0.1, 0.2, 0.2, 0.5, 1.0, 5.0]) == (0.1,) * 7
    assert monotone([0.5, 0.2, 0.05, 0.2, 0.0, 0.1]) == (0.5, 0.2, 0.05, 0.05, 0.0, 0.0)
