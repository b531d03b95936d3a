"""The cold-start blend's fitted weight curve (batch.blend_fit), on synthetic validation tables.

Pure NumPy: no Spark. A synthetic table row is what `calibrate_blend` measures for one bucket n:
the mean NDCG at each candidate weight, here a base plus a bump of height H centred on that
bucket's best weight (on the axis the fit interpolates on).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.blend_fit import Fit, coordinate, fit_blend, interpolate, per_bucket_rule
from batch.train import BLEND_N, BLEND_WEIGHTS

W = BLEND_WEIGHTS
CAP = max(W)
H = 0.04  # what the prior can add to a bucket's NDCG at most, in these tables
AXIS = coordinate(np.array(W), 0.05)


def row(best: float, h: float = H, width: float = 1.5, base: float = 0.2) -> np.ndarray:
    return base + h * np.exp(-((AXIS - coordinate(min(best, CAP), 0.05)) ** 2) / (2 * width**2))


def table(best_by_n: dict[int, float], override: dict[int, np.ndarray] | None = None, users: int = 100):
    out = []
    for n, best in best_by_n.items():
        values = (override or {}).get(n, row(best))
        out.append({"n": n, "users": users, **{str(w): float(v) for w, v in zip(W, values, strict=True)}})
    return out


def curve(a: float, b: float) -> dict[int, float]:
    return {n: a / (n + b) for n in BLEND_N}


def weights(fit: Fit) -> np.ndarray:
    return np.array(fit.table(BLEND_N, CAP))


def regret(clean: list[dict], chosen: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each bucket's NDCG (on its clean row) lost by `chosen` weights against `reference` ones."""
    out = []
    for r, w, ref in zip(clean, chosen, reference, strict=True):
        values = [r[str(c)] for c in W]
        out.append(float(interpolate(W, values, ref) - interpolate(W, values, w)))
    return np.array(out)


def test_one_noisy_small_bucket_does_not_drag_the_others_down():
    """The measured failure: the buckets agree on about 1 at n = 2..8, n = 1's row (noise) peaks at
    0.2. The old rule (per-bucket best, capped by smaller n) serves 0.2 at every n; the fit keeps
    every other bucket within a factor 1.5 of its weight without the noisy row."""
    clean = table(curve(8.0, 6.0))  # w: 1.14 at n=1, 1.0 at n=2, 0.73 at n=5, 0.57 at n=8
    noisy = table(curve(8.0, 6.0), override={1: row(0.2)})
    before, after = weights(fit_blend(clean, W)), weights(fit_blend(noisy, W))
    others = slice(1, None)
    assert np.all(np.abs(np.log(after[others] / before[others])) < np.log(1.5)), (before, after)
    assert after[list(BLEND_N).index(5)] > 0.5
    old = np.array(per_bucket_rule(noisy, W, BLEND_N))
    assert old[list(BLEND_N).index(5)] == 0.2  # what the old rule did with the same table
    assert np.all(old[others] <= 0.2)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0.1, 100.0),
    b=st.one_of(st.just(0.0), st.floats(0.0, 50.0)),
    bucket=st.sampled_from(BLEND_N),
    noise=st.one_of(
        st.sampled_from(W).map(lambda w: ("moved", w)),
        st.lists(st.floats(-H / 4, H / 4), min_size=len(W), max_size=len(W)).map(lambda e: ("noise", e)),
    ),
)
def test_a_perturbed_bucket_costs_the_others_little(a, b, bucket, noise):
    """Whatever one bucket's row says (its bump moved to any candidate, or noise of up to a
    quarter of the bump on every entry), every other bucket loses less than a third of what the
    prior can give it, measured on its own clean row."""
    truth = curve(a, b)
    clean = table(truth)
    kind, value = noise
    changed = row(value) if kind == "moved" else row(truth[bucket]) + np.array(value)
    before = weights(fit_blend(clean, W))
    after = weights(fit_blend(table(truth, override={bucket: changed}), W))
    others = np.array(BLEND_N) != bucket
    assert regret(clean, after, before)[others].max() < H / 3


# Rows that rise with the weight: a start and positive steps, one row per bucket.
RISING = st.lists(
    st.tuples(st.floats(0.0, 0.3), st.lists(st.floats(1e-4, 0.05), min_size=len(W) - 1, max_size=len(W) - 1)),
    min_size=len(BLEND_N),
    max_size=len(BLEND_N),
).map(lambda rows: [np.cumsum([start, *steps]) for start, steps in rows])


@settings(max_examples=40, deadline=None)
@given(RISING)
def test_popularity_best_everywhere_gives_popularity_everywhere(rows):
    """Every row rises with the weight: every bucket, n = 200 included, gets the popularity weight."""
    fit = fit_blend(table(dict.fromkeys(BLEND_N, 1.0), override=dict(zip(BLEND_N, rows, strict=True))), W)
    assert np.all(weights(fit) == CAP)


@settings(max_examples=40, deadline=None)
@given(RISING)
def test_personal_best_everywhere_turns_the_prior_off(rows):
    """Every row falls with the weight: no prior at any n."""
    falling = {n: r[::-1] for n, r in zip(BLEND_N, rows, strict=True)}
    fit = fit_blend(table(dict.fromkeys(BLEND_N, 1.0), override=falling), W)
    assert np.all(weights(fit) == 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(0.0, 1.0), min_size=len(W), max_size=len(W)), min_size=1, max_size=len(BLEND_N)
    ),
    st.lists(st.integers(1, 5000), min_size=len(BLEND_N), max_size=len(BLEND_N)),
)
def test_the_fitted_weight_never_grows_with_n(rows, users):
    """Any table, any bucket sizes: w(n) >= 0 and non-increasing, on the buckets and in between."""
    t = [
        {"n": n, "users": u, **{str(w): v for w, v in zip(W, r, strict=True)}}
        for n, u, r in zip(BLEND_N, users, rows, strict=False)
    ]  # rows may cover fewer buckets than BLEND_N
    fit = fit_blend(t, W)
    dense = fit.weight(np.arange(1, 1001))
    assert fit.a >= 0 and fit.b >= 0
    assert np.all(dense >= 0) and np.all(np.diff(dense) <= 1e-12)
    served = weights(fit)
    assert np.all(np.diff(served) <= 1e-12) and served.max() <= CAP


def test_the_fit_recovers_a_planted_curve():
    """Rows peaking on 3/(n+1): the fit lands within one grid step (x1.26) of it at every n where
    the tables resolve a weight (0.05 to 5)."""
    truth = curve(3.0, 1.0)
    got = weights(fit_blend(table(truth), W))
    want = np.array(list(truth.values()))
    resolved = (want >= 0.05) & (want <= 5)
    assert np.all(np.abs(np.log(got[resolved] / want[resolved])) < np.log(1.3)), (got, want)


def test_interpolation_is_exact_at_the_candidates_and_flat_beyond_popularity():
    values = np.linspace(0.1, 0.3, len(W))
    assert np.allclose(interpolate(W, values, np.array(W)), values)
    assert interpolate(W, values, np.array([1e6]))[0] == values[-1]
    middle = interpolate(W, values, np.array([np.sqrt(0.5 * 1.0)]))[0]  # halfway on the log axis
    assert np.isclose(middle, (values[W.index(0.5)] + values[W.index(1.0)]) / 2)
    near_zero = interpolate(W, values, np.array([0.025]))[0]  # halfway on the linear piece
    assert np.isclose(near_zero, (values[0] + values[1]) / 2)


def test_no_table_means_no_prior_and_the_fit_is_recorded():
    assert fit_blend([], W) == Fit(0.0, 0.0, None)
    fit = fit_blend(table(curve(3.0, 1.0)), W)
    d = fit.to_dict()
    assert d["form"] == "a/(n+b)" and (d["a"], d["b"]) == (fit.a, fit.b) and d["mean_validation_ndcg"] > 0.2
