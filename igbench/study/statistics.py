"""The two numbers a forced choice between two models needs: how often one was chosen, with a 95% interval,
and how surprising that share would be if people chose at random."""

from __future__ import annotations

from typing import NamedTuple, Sequence

#: Coverage of the interval reported with every share.
CONFIDENCE = 0.95


class Share(NamedTuple):
    """``k`` choices of ``n``: the share, its Wilson interval and the exact two-sided binomial p-value
    against 1/2 (None for each when ``n`` is 0)."""

    k: int
    n: int
    share: float | None
    low: float | None
    high: float | None
    p_value: float | None


def share(k: int, n: int) -> Share:
    """:class:`Share` of ``k`` successes in ``n`` trials (scipy's exact binomial test, Wilson interval)."""
    if n == 0:
        return Share(0, 0, None, None, None, None)
    from scipy.stats import binomtest

    test = binomtest(int(k), int(n), 0.5, alternative="two-sided")
    ci = test.proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Share(int(k), int(n), k / n, float(ci.low), float(ci.high), min(1.0, float(test.pvalue)))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of ``p_values`` (None stays None and does not count as a test): each
    adjusted p-value keeps the family-wise error rate across the tests."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
