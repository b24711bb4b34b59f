"""How many participants a study needs: a simulation of the two tests ``study score`` reports for one pair of
models, before anyone is asked.

Each simulated participant has a preference of their own for the first model, drawn around the
``preference`` the study hopes to detect with standard deviation ``spread`` (people differ), and answers
``trials`` trials at it. For each number of participants the simulation reports how often each test rejects
"no preference" at ``alpha`` (its power) and how often it does so when there is none on average, with the
same spread (its false-positive rate). The test over all answers treats answers as independent, so with a
spread above 0 its false-positive rate exceeds ``alpha``; the sign test over participants keeps it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def two_sided_p(k, n):
    """The exact two-sided binomial p-values of ``k`` successes in ``n`` trials against 1/2, element-wise
    (arrays); 1 where ``n`` is 0. For p = 1/2 the distribution is symmetric, so this is twice the smaller
    tail, capped at 1, which is what :func:`.statistics.share` reports."""
    import numpy as np
    from scipy.stats import binom

    k, n = np.asarray(k), np.asarray(n)
    lower = binom.cdf(k, n, 0.5)
    upper = binom.sf(k - 1, n, 0.5)
    return np.where(n > 0, np.minimum(1.0, 2 * np.minimum(lower, upper)), 1.0)


def rejection_rates(trials: int, participants: int, preference: float, spread: float, alpha: float, sims: int,
                    rng) -> tuple[float, float]:
    """Share of ``sims`` simulated studies in which the test over answers, and the sign test over
    participants, reject 1/2 at ``alpha``."""
    import numpy as np

    p = np.clip(rng.normal(preference, spread, size=(sims, participants)), 0.0, 1.0)
    k = rng.binomial(trials, p)
    answers = two_sided_p(k.sum(1), np.full(sims, participants * trials))
    first, second = (2 * k > trials).sum(1), (2 * k < trials).sum(1)
    people = two_sided_p(first, first + second)
    return float((answers < alpha).mean()), float((people < alpha).mean())


def simulate_power(trials: int, participants: Sequence[int], preference: float, spread: float = 0.1,
                   alpha: float = 0.05, sims: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Per number of participants: the power of both tests at ``preference``, and their false-positive rate
    at 1/2 (both with ``spread``). Seeded: the same arguments give the same numbers."""
    import numpy as np

    from ..errors import UsageError

    if trials < 1 or sims < 1 or not participants or min(participants) < 1:
        raise UsageError("--trials-per-pair, --sims and every --participants value must be >= 1")
    for option, value, ok, rule in (("--preference", preference, 0 <= preference <= 1, "lie in [0, 1]"),
                                    ("--alpha", alpha, 0 < alpha < 1, "lie in (0, 1), e.g. 0.05"),
                                    ("--spread", spread, 0 <= spread < math.inf, "be a number >= 0, e.g. 0.1"),
                                    ("--seed", seed, seed >= 0, "be >= 0")):
        if not ok:  # comparisons with NaN are false: nan fails every rule
            raise UsageError(f"{option} must {rule}, got {value:g}")
    if len(set(participants)) < len(participants):
        raise UsageError(f"--participants lists a count twice ({','.join(map(str, participants))}); give each once")
    rows = []
    for n in participants:
        rng = np.random.default_rng([int(seed), int(n)])
        power_answers, power_people = rejection_rates(trials, n, preference, spread, alpha, sims, rng)
        false_answers, false_people = rejection_rates(trials, n, 0.5, spread, alpha, sims, rng)
        rows.append({"participants": int(n), "power_answers": power_answers, "power_participants": power_people,
                     "false_positive_answers": false_answers, "false_positive_participants": false_people})
    return rows
