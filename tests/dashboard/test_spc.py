"""Control-chart arithmetic and the Western Electric rules, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.spc import RULES, p_chart, u_chart, western_electric

NAN = math.nan


def test_u_chart_by_hand() -> None:
    chart = u_chart([2, 4, 6], [1, 2, 1])  # u = 12 / 4 = 3
    assert chart.kind == "u" and chart.centre == pytest.approx(3.0)
    assert chart.values == pytest.approx((2.0, 2.0, 6.0))
    assert chart.sigma == pytest.approx((math.sqrt(3), math.sqrt(1.5), math.sqrt(3)))
    assert chart.ucl == pytest.approx((3 + 3 * math.sqrt(3), 3 + 3 * math.sqrt(1.5), 3 + 3 * math.sqrt(3)))
    assert chart.lcl == (0.0, 0.0, 0.0)  # 3 - 3 sigma < 0 is clipped
    assert chart.z == pytest.approx((-1 / math.sqrt(3), -1 / math.sqrt(1.5), 3 / math.sqrt(3)))
    assert chart.out_of_control == ()


def test_p_chart_by_hand_flags_the_point_beyond_3_sigma() -> None:
    chart = p_chart([1, 2, 10], [10, 10, 10])
    p = 13 / 30
    sigma = math.sqrt(p * (1 - p) / 10)
    assert chart.centre == pytest.approx(p)
    assert chart.ucl[0] == pytest.approx(min(1.0, p + 3 * sigma)) and chart.lcl[0] == 0.0
    assert chart.z[2] == pytest.approx((1.0 - p) / sigma)
    assert chart.violations[2] == (1,) and chart.out_of_control == (2,)


def test_p_chart_limits_stay_within_0_and_1() -> None:
    chart = p_chart([2, 1], [2, 2])
    assert all(0.0 <= v <= 1.0 for v in chart.ucl + chart.lcl)
    assert chart.ucl[0] == 1.0


def test_an_empty_sample_is_no_point() -> None:
    chart = u_chart([3, 0, 5], [1.0, 0.0, 1.0])
    assert math.isnan(chart.values[1]) and math.isnan(chart.z[1]) and chart.violations[1] == ()
    assert chart.centre == pytest.approx(4.0)
    nothing = u_chart([0, 0], [0, 0])
    assert math.isnan(nothing.centre) and nothing.out_of_control == ()
    assert u_chart([], []).values == ()


@pytest.mark.parametrize(
    ("counts", "units", "message"),
    [([1, 2], [1], "2 counts but 1"), ([-1], [1], ">= 0"), ([1], [NAN], ">= 0")],
)
def test_bad_inputs_are_refused(counts, units, message) -> None:
    with pytest.raises(ValueError, match=message):
        u_chart(counts, units)


def test_p_chart_refuses_more_defective_than_inspected() -> None:
    with pytest.raises(ValueError, match="nonconforming out of only"):
        p_chart([3], [2])


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        ([0.0] * 7 + [3.5], {7: {1}}),
        ([0.0] * 7 + [-3.2], {7: {1}}),
        ([0.0, 2.5, 0.0, 2.5], {3: {2}}),  # 2 of 3 beyond 2 sigma, above
        ([0.0, -2.5, -2.1], {2: {2}}),  # below
        ([2.5, -2.5, 0.0], {}),  # opposite sides, and the last point is not beyond
        ([2.5, 2.5, 0.0], {}),  # a window of 3 is needed; the completing point must be beyond
        ([0.0, 1.5, 1.5, 0.5, 1.5, 1.5], {5: {3}}),  # 4 of 5 beyond 1 sigma
        ([0.0, 1.5, -1.5, 1.5, 1.5, 1.5], {5: {3}}),  # 4 of the last 5 above, one below
        ([0.0, 1.5, -1.5, 1.5, 0.5, 1.5], {}),  # only 3 of the last 5 above
        ([0.5] * 8, {7: {4}}),  # 8 in a row above
        ([-0.2] * 9, {7: {4}, 8: {4}}),
        ([0.5] * 4 + [0.0] + [0.5] * 4, {}),  # a point on the centre line breaks the run
        ([0.5] * 4 + [NAN] + [0.5] * 4, {8: {4}}),  # a missing sample does not
        ([0.3, -0.4, 1.2, -0.8, 0.1, 2.9, -2.9], {}),
        ([2.2, 2.4, 2.6, 3.3], {2: {2}, 3: {1, 2}}),  # rules 2-4 need a full window
    ],
)
def test_western_electric_rules(z, expected) -> None:
    got = {i: rules for i, rules in enumerate(western_electric(z)) if rules}
    assert got == expected


def test_rule_3_counts_four_of_five() -> None:
    z = [1.5, 1.5, 1.5, 0.2, 1.5]
    assert western_electric(z)[4] == {3}
    assert western_electric([1.5, 1.5, 0.2, 0.2, 1.5])[4] == set()


@given(st.lists(st.floats(min_value=-6, max_value=6, allow_nan=False), max_size=40))
def test_rule_1_is_exactly_the_points_beyond_3_sigma(z) -> None:
    flags = western_electric(z)
    assert [1 in f for f in flags] == [abs(v) > 3 for v in z]
    assert all(f <= set(RULES) for f in flags)


def test_samples_outside_the_baseline_set_neither_the_centre_nor_the_rules() -> None:
    counts, units = [50.0, 2.0, 3.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]
    chart = u_chart(counts, units, baseline=[False, True, True, True, True])
    assert chart.centre == pytest.approx(10.0 / 4.0)  # the 50-defect partial bucket is left out
    assert chart.violations[0] == () and chart.values[0] == 50.0  # plotted, breaks no rule
    whole = u_chart(counts, units)
    assert whole.centre == pytest.approx(60.0 / 5.0)
    p = p_chart([1.0, 1.0, 1.0], [1.0, 10.0, 10.0], baseline=[False, True, True])
    assert p.centre == pytest.approx(2.0 / 20.0)
    with pytest.raises(ValueError, match="baseline flags"):
        u_chart(counts, units, baseline=[True])
