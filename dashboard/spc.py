"""Attribute control charts (u and p) with 3-sigma limits and the Western Electric run rules.

Pure functions on plain sequences, so the Trends page only draws what they return. Sample sizes vary
(frames per hour are not constant), so the limits vary per point and the run rules are applied to each
point's distance from the centre line in its own sigmas (``z``), as in the standardised control chart.

* u-chart: ``c_i`` defects in ``n_i`` units (e.g. thousands of frames); ``u_i = c_i / n_i``,
  centre ``u = sum(c) / sum(n)``, ``sigma_i = sqrt(u / n_i)``.
* p-chart: ``d_i`` nonconforming units (frames with a defect) out of ``n_i``; ``p_i = d_i / n_i``,
  centre ``p = sum(d) / sum(n)``, ``sigma_i = sqrt(p (1 - p) / n_i)``; limits clipped to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RULES: dict[int, str] = {
    1: "1 point beyond 3 sigma",
    2: "2 of 3 points beyond 2 sigma, same side",
    3: "4 of 5 points beyond 1 sigma, same side",
    4: "8 points in a row on one side of the centre line",
}
"""The Western Electric rules, by number (the order of the Western Electric handbook, 1956)."""


@dataclass(frozen=True, slots=True)
class ControlChart:
    """A chart's points, centre line and per-point limits; ``violations[i]`` the rules point ``i`` breaks.

    All sequences have one entry per sample; a sample with no units has ``nan`` value, limits and ``z``
    and breaks no rule. ``centre`` is ``nan`` when there are no units at all.
    """

    kind: str
    values: tuple[float, ...]
    centre: float
    sigma: tuple[float, ...]
    ucl: tuple[float, ...]
    lcl: tuple[float, ...]
    z: tuple[float, ...]
    violations: tuple[tuple[int, ...], ...]

    @property
    def out_of_control(self) -> tuple[int, ...]:
        """Indices of the points that break at least one rule."""
        return tuple(i for i, rules in enumerate(self.violations) if rules)


def _check(counts: Sequence[float], units: Sequence[float], what: str) -> None:
    if len(counts) != len(units):
        raise ValueError(f"{what}: {len(counts)} counts but {len(units)} sample sizes")
    for c, n in zip(counts, units, strict=True):
        if c < 0 or n < 0 or math.isnan(c) or math.isnan(n):
            raise ValueError(f"{what}: counts and sample sizes must be >= 0, got {c} in {n}")


def _chart(
    kind: str,
    counts: Sequence[float],
    units: Sequence[float],
    centre: float,
    sigmas: list[float],
    in_baseline: Sequence[bool],
) -> ControlChart:
    values, ucl, lcl, z = [], [], [], []
    for c, n, s in zip(counts, units, sigmas, strict=True):
        if n <= 0:
            values.append(math.nan)
            ucl.append(math.nan)
            lcl.append(math.nan)
            z.append(math.nan)
            continue
        v = c / n
        values.append(v)
        upper, lower = centre + 3 * s, max(0.0, centre - 3 * s)
        if kind == "p":
            upper = min(1.0, upper)
        ucl.append(upper)
        lcl.append(lower)
        z.append((v - centre) / s if s > 0 else (0.0 if v == centre else math.copysign(math.inf, v - centre)))
    return ControlChart(
        kind=kind,
        values=tuple(values),
        centre=centre,
        sigma=tuple(sigmas),
        ucl=tuple(ucl),
        lcl=tuple(lcl),
        z=tuple(z),
        violations=tuple(
            tuple(sorted(r))
            for r in western_electric([v if b else math.nan for v, b in zip(z, in_baseline, strict=True)])
        ),
    )


def _baseline(n: int, baseline: Sequence[bool] | None, what: str) -> list[bool]:
    if baseline is None:
        return [True] * n
    if len(baseline) != n:
        raise ValueError(f"{what}: {len(baseline)} baseline flags for {n} samples")
    return [bool(b) for b in baseline]


def u_chart(
    counts: Sequence[float], units: Sequence[float], *, baseline: Sequence[bool] | None = None
) -> ControlChart:
    """u-chart of ``counts[i]`` defects found in ``units[i]`` inspection units (any positive size).

    ``baseline`` (default: every sample) says which samples set the centre line and are checked by the
    run rules; the others (partial buckets cut by the time range) are plotted against the limits only.
    """
    _check(counts, units, "u-chart")
    use = _baseline(len(counts), baseline, "u-chart")
    total = sum(n for n, b in zip(units, use, strict=True) if b)
    found = sum(c for c, b in zip(counts, use, strict=True) if b)
    centre = found / total if total > 0 else math.nan
    sigmas = [math.sqrt(centre / n) if n > 0 and total > 0 else math.nan for n in units]
    return _chart("u", counts, units, centre, sigmas, use)


def p_chart(
    nonconforming: Sequence[float], inspected: Sequence[float], *, baseline: Sequence[bool] | None = None
) -> ControlChart:
    """p-chart of ``nonconforming[i]`` defective units out of ``inspected[i]`` units (``baseline``: as
    :func:`u_chart`)."""
    _check(nonconforming, inspected, "p-chart")
    for d, n in zip(nonconforming, inspected, strict=True):
        if d > n:
            raise ValueError(f"p-chart: {d} nonconforming out of only {n} inspected")
    use = _baseline(len(inspected), baseline, "p-chart")
    total = sum(n for n, b in zip(inspected, use, strict=True) if b)
    found = sum(d for d, b in zip(nonconforming, use, strict=True) if b)
    centre = found / total if total > 0 else math.nan
    sigmas = [math.sqrt(centre * (1 - centre) / n) if n > 0 and total > 0 else math.nan for n in inspected]
    return _chart("p", nonconforming, inspected, centre, sigmas, use)


def western_electric(z: Sequence[float]) -> list[set[int]]:
    """The Western Electric rules each point breaks, from the points' distances to the centre in sigmas.

    A point is flagged when it completes a pattern and is itself part of it: rule 1 ``|z| > 3``;
    rule 2 it and at least one of the two before are beyond 2 sigma on the same side; rule 3 it and at
    least three of the four before are beyond 1 sigma on the same side; rule 4 it and the seven before are
    all on the same side (``z == 0`` is on neither side). ``nan`` points (no sample) are skipped: the
    windows run over the samples that exist.

    Args:
        z: ``(N,)`` standardised distances ``(value - centre) / sigma_i``.

    Returns:
        ``N`` sets of rule numbers (see :data:`RULES`), empty for an in-control point.
    """
    out: list[set[int]] = [set() for _ in z]
    present = [i for i, v in enumerate(z) if not math.isnan(v)]
    zs = [z[i] for i in present]
    for k, v in enumerate(zs):
        rules = out[present[k]]
        if abs(v) > 3:
            rules.add(1)
        for side in (1, -1):
            if _beyond(zs, k, window=3, need=2, limit=2, side=side):
                rules.add(2)
            if _beyond(zs, k, window=5, need=4, limit=1, side=side):
                rules.add(3)
            if k >= 7 and all(side * w > 0 for w in zs[k - 7 : k + 1]):
                rules.add(4)
    return out


def _beyond(zs: Sequence[float], k: int, *, window: int, need: int, limit: float, side: int) -> bool:
    """Whether point ``k`` is beyond ``limit`` on ``side`` and so are ``need`` of the last ``window``."""
    if k + 1 < window or side * zs[k] <= limit:
        return False
    return sum(1 for w in zs[k - window + 1 : k + 1] if side * w > limit) >= need
