"""Promote a candidate on live evidence: its hit rate against CURRENT's on the same live events.

The stream scores a candidate (train/retrain --candidate) on exactly the events CURRENT's served
list is scored on (streaming.live_eval), so the two hit rates are paired: only the discordant
events differ (b: the candidate hit, CURRENT did not; c: the reverse). The rule (McNemar's test
as a normal approximation of the paired difference d = (b - c) / n):

- keep shadowing until at least `min_events` events have been scored for the candidate;
- promote when d >= 0 and the one-sided 95 % lower bound d - 1.645 * se >= -margin (the
  candidate's hit rate is at least CURRENT's, and with 95 % confidence not worse by more than
  `margin`), se = sqrt(b + c - (b - c)^2 / n) / n;
- reject when the upper bound d + 1.645 * se < 0 (worse with 95 % confidence);
- otherwise keep shadowing (until the caller's timeout, which rejects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.645  # one-sided 95 %
MARGIN = 0.005  # half a point of hit rate


@dataclass(frozen=True)
class Decision:
    action: str  # "promote" | "reject" | "wait"
    events: int
    hit_rate: float  # the candidate's
    current_hit_rate: float  # CURRENT's on the same events
    low: float  # lower bound of the difference
    high: float
    reason: str


def decide(events: int, hits: int, only_candidate: int, only_current: int, min_events: int = 2000,
           margin: float = MARGIN) -> Decision:  # fmt: skip
    """The rule above, for a candidate's shadow counts (CURRENT's hits = hits - b + c)."""
    n = max(events, 1)
    b, c = only_candidate, only_current
    current_hits = hits - b + c
    d = (b - c) / n
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    low, high = d - Z95 * se, d + Z95 * se
    rates = (hits / n, current_hits / n)
    if events < min_events:
        return Decision("wait", events, *rates, low, high, f"{events} of {min_events} shadowed events")
    if d >= 0 and low >= -margin:
        why = f"hit rate {rates[0]:.4f} >= CURRENT's {rates[1]:.4f}; 95 % lower bound {low:+.4f}"
        return Decision("promote", events, *rates, low, high, why)
    if high < 0:
        why = f"hit rate {rates[0]:.4f} < CURRENT's {rates[1]:.4f}, 95 % upper bound {high:+.4f}"
        return Decision("reject", events, *rates, low, high, why)
    return Decision(
        "wait", events, *rates, low, high, f"undecided: difference {d:+.4f} in [{low:+.4f}, {high:+.4f}]"
    )
