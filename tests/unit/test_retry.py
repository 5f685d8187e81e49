"""Retry options and v2's calculateRetryAt (SPEC §5; v2 §3.1-§3.3)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_nb import retry
from trigger_nb._exceptions import ConfigError
from trigger_nb.retry import (
    DEFAULT_RETRY_OPTIONS,
    calculate_retry_at,
    exponential_backoff,
    js_round,
    normalize_retry_options,
    retry_delays,
    standard_backoff,
)

NOW = 0.0  # exact ms arithmetic; test_returns_epoch_seconds covers a real clock


def at(options: Any, attempts: int, r: float | None = None) -> float | None:
    """Delay in ms chosen by calculate_retry_at, or None."""
    rand = (lambda: r) if r is not None else (lambda: pytest.fail("random() must not be called"))
    when = calculate_retry_at(options, attempts, now=NOW, random=rand)
    return None if when is None else round((when - NOW) * 1000, 6)


# --- the worked examples of v2 §3.2 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "delays"),
    [
        (DEFAULT_RETRY_OPTIONS, [1000, 1000, 1800, 3240]),
        (standard_backoff, [500, 500, 900, 1620, 2916, 5249, 9448]),
        (exponential_backoff, [1000, 1000, 2000, 4000, 8000, 16000, 30000]),
    ],
)
def test_worked_examples(options: Any, delays: list[int]) -> None:
    assert retry_delays(options) == delays
    no_random = {**options, "randomize": False}
    for attempts, delay in enumerate(delays):
        assert at(no_random, attempts) == delay
    assert at(no_random, len(delays)) is None  # then stop: limit = total attempts


def test_public_module_path() -> None:
    assert retry.standard_backoff is standard_backoff
    assert retry.exponential_backoff is exponential_backoff


def test_presets_are_v2s() -> None:
    assert dict(DEFAULT_RETRY_OPTIONS) == {
        "limit": 5,
        "factor": 1.8,
        "min_timeout_in_ms": 1000,
        "max_timeout_in_ms": 60000,
        "randomize": True,
    }
    assert dict(standard_backoff) == {
        **DEFAULT_RETRY_OPTIONS,
        "limit": 8,
        "min_timeout_in_ms": 500,
        "max_timeout_in_ms": 30000,
    }
    assert dict(exponential_backoff) == {
        **DEFAULT_RETRY_OPTIONS,
        "limit": 8,
        "factor": 2,
        "max_timeout_in_ms": 30000,
    }


@pytest.mark.parametrize("preset", [DEFAULT_RETRY_OPTIONS, standard_backoff, exponential_backoff])
def test_presets_cannot_be_mutated_by_accident(preset: Any) -> None:
    with pytest.raises(TypeError):
        preset["limit"] = 1
    normalized = normalize_retry_options(preset)
    assert normalized is not None
    normalized["limit"] = 1
    assert preset["limit"] != 1
    assert normalize_retry_options({**preset, "limit": 3}) == {**preset, "limit": 3}


# --- limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1])
def test_limit_0_or_1_means_no_retry(limit: int) -> None:
    assert retry_delays({"limit": limit}) == []
    assert at({"limit": limit}, 0, 0.5) is None


def test_limit_2_means_one_retry() -> None:
    assert retry_delays({"limit": 2}) == [1000]
    assert at({"limit": 2, "randomize": False}, 1) is None


# --- randomness, rounding, cap --------------------------------------------------------------


def test_randomize_bounds() -> None:
    assert at({}, 0, 0.0) == 1000  # r = random() + 1 = 1
    assert at({}, 0, 0.999) == 1999
    assert at({}, 2, 0.999) == js_round(1.999 * 1800)  # 3598.2 -> 3598


def test_random_is_not_called_when_randomize_is_off() -> None:
    assert at({"randomize": False}, 0) == 1000  # `at` fails if random() is called


def test_js_round() -> None:
    assert js_round(2.5) == 3 and round(2.5) == 2  # not banker's rounding
    assert js_round(3.5) == 4
    assert js_round(0.5) == 1
    assert js_round(-2.5) == -2
    assert js_round(1.4999) == 1
    assert js_round(3240.0000000000005) == 3240
    assert js_round(0.49999999999999994) == 0  # Math.round(0.49999999999999994) === 0


def test_formula_rounds_like_javascript() -> None:
    # 1 * 2.5 ** 1 = 2.5: Math.round gives 3 where Python's round() would give 2
    assert retry_delays({"min_timeout_in_ms": 1, "factor": 2.5, "limit": 4}) == [1, 1, 3]


def test_random_applies_before_the_cap() -> None:
    capped = {"max_timeout_in_ms": 1500}
    assert at(capped, 0, 0.2) == 1200
    assert at(capped, 0, 0.999) == 1500  # 1999 capped: the cap is a hard ceiling
    assert at({**capped, "limit": 20}, 10, 0.0) == 1500


def test_min_timeout_is_at_least_1ms() -> None:
    assert retry_delays({"min_timeout_in_ms": 0, "factor": 2, "limit": 4}) == [1, 1, 2]


def test_huge_exponent_is_capped_not_an_overflow() -> None:
    options = {"limit": 10**6, "factor": 10.0, "max_timeout_in_ms": 5000}
    assert at(options, 5000, 0.5) == 5000


def test_returns_epoch_seconds() -> None:
    when = calculate_retry_at({"randomize": False}, 2, now=1_700_000_000.0)
    assert when == pytest.approx(1_700_000_001.8, abs=1e-6)


@given(
    attempts=st.integers(min_value=0, max_value=30),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
    factor=st.floats(min_value=0.1, max_value=4),
    min_ms=st.integers(min_value=0, max_value=10_000),
    max_ms=st.integers(min_value=0, max_value=100_000),
)
def test_delay_bounds(attempts: int, r: float, factor: float, min_ms: int, max_ms: int) -> None:
    options = {
        "limit": 100,
        "factor": factor,
        "min_timeout_in_ms": min_ms,
        "max_timeout_in_ms": max_ms,
    }
    delay = at(options, attempts, r)
    base = max(min_ms, 1) * factor ** max(attempts - 1, 0)
    assert delay is not None
    assert delay <= max_ms
    assert delay == min(max_ms, delay)
    if delay < max_ms:
        assert js_round(base) <= delay <= js_round(2 * base)


# --- normalize_retry_options ----------------------------------------------------------------


def test_none_means_no_retry_and_empty_means_defaults() -> None:
    assert normalize_retry_options(None) is None
    assert normalize_retry_options({}) == dict(DEFAULT_RETRY_OPTIONS)


def test_camel_case_aliases() -> None:
    options = normalize_retry_options({"minTimeoutInMs": 10, "maxTimeoutInMs": 20})
    assert options == {**DEFAULT_RETRY_OPTIONS, "min_timeout_in_ms": 10, "max_timeout_in_ms": 20}
    assert retry_delays({"minTimeoutInMs": 10, "limit": 3, "factor": 2}) == [10, 10]


def test_an_option_given_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match="twice"):
        normalize_retry_options({"minTimeoutInMs": 10, "min_timeout_in_ms": 20})


def test_none_values_are_dropped_before_the_defaults() -> None:
    # v2 let an explicit undefined override a default (NaN delays): not copied
    options = normalize_retry_options({"limit": None, "factor": 2, "maxTimeoutInMs": None})
    assert options == {**DEFAULT_RETRY_OPTIONS, "factor": 2}
    assert at({"factor": None, "randomize": None}, 2, 0.0) == 1800  # defaults: 1.8, random on


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        normalize_retry_options({"limt": 3})
    message = str(info.value)
    assert "'limt'" in message and "Did you mean 'limit'" in message
    for name in DEFAULT_RETRY_OPTIONS:
        assert name in message


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"factor": 0}, "factor"),
        ({"factor": -1}, "factor"),
        ({"factor": math.nan}, "factor"),
        ({"factor": math.inf}, "factor"),
        ({"factor": True}, "factor"),
        ({"factor": "2"}, "factor"),
        ({"min_timeout_in_ms": -1}, "min_timeout_in_ms"),
        ({"min_timeout_in_ms": math.nan}, "min_timeout_in_ms"),
        ({"maxTimeoutInMs": "1s"}, "max_timeout_in_ms"),
        ({"max_timeout_in_ms": math.inf}, "max_timeout_in_ms"),
        ({"randomize": 1}, "randomize"),
        ({"randomize": "yes"}, "randomize"),
    ],
)
def test_validation_errors(options: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        normalize_retry_options(options)
    with pytest.raises(ConfigError):
        calculate_retry_at(options, 0, now=NOW)


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="dict"):
        normalize_retry_options([("limit", 3)])  # type: ignore[arg-type]


def test_float_timeouts_and_zero_limit_are_accepted() -> None:
    assert normalize_retry_options({"min_timeout_in_ms": 1.5, "limit": 0}) is not None
