"""The promotion rule for a shadow-scored candidate (batch.promotion), on explicit counts."""

import pytest

from batch.promotion import decide


def test_waits_until_enough_events_were_shadowed():
    assert decide(events=500, hits=100, only_candidate=50, only_current=0, min_events=2000).action == "wait"


def test_promotes_a_clearly_better_candidate_and_rejects_a_clearly_worse_one():
    better = decide(5000, hits=400, only_candidate=150, only_current=50)
    assert better.action == "promote" and better.hit_rate > better.current_hit_rate
    assert better.current_hit_rate == pytest.approx((400 - 150 + 50) / 5000)
    worse = decide(5000, hits=300, only_candidate=50, only_current=150)
    assert worse.action == "reject" and worse.high < 0


def test_equal_lists_are_promoted_and_a_tiny_noisy_gain_with_many_discordant_events_waits():
    assert decide(3000, hits=200, only_candidate=0, only_current=0).action == "promote"  # identical hits
    noisy = decide(2000, hits=300, only_candidate=200, only_current=199)  # d ~ 0, se ~ 0.007
    assert noisy.action == "wait" and noisy.low < -0.005 < noisy.high
