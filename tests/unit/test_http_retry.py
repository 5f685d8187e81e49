"""Pure rules of background fetch / poll (SPEC §6.5, §6.6; v2 §5.4, §5.5): status patterns,
v2's key order, strategies, reset headers, timeout clamping, request validation."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import pytest

from trigger_nb import redact_string, retry
from trigger_nb._exceptions import ConfigError, EventFilterError
from trigger_nb._io._fetch_request import (
    FETCH_TIMEOUT_MS,
    POLL_REQUEST_TIMEOUT_MS,
    clamp_timeout_ms,
    normalize_timeout,
    parse_body,
    prepare_request,
    task_name,
)
from trigger_nb._io._fetch_retry import (
    HEADERS_STRATEGY_MAX_ATTEMPTS,
    FetchError,
    display_retry,
    js_key_order,
    normalize_fetch_retry,
    parse_reset,
    select_strategy,
    status_matches,
    validate_status_pattern,
)

NOW = 1_700_000_000.0


# --- status patterns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("all", [100, 200, 404, 599], []),
        ("429", [429], [428, 430, 200]),
        ("401,403", [401, 403], [402, 404, 400]),
        ("401, 403 ,404", [401, 403, 404], [400]),
        ("500-599", [500, 503, 599], [499, 600]),
        ("400 - 404", [400, 404], [405]),
        ("5xx", [500, 550, 599], [499, 600, 50]),
        ("4x", [400, 404, 451], [500, 399]),
        ("40x", [400, 409], [410, 500]),
        ("42x", [420, 429], [430]),
    ],
)
def test_status_patterns(pattern: str, matching: list[int], not_matching: list[int]) -> None:
    assert validate_status_pattern(pattern) == pattern.strip()
    for status in matching:
        assert status_matches(pattern, status), status
    for status in not_matching:
        assert not status_matches(pattern, status), status


@pytest.mark.parametrize(
    "pattern", ["abc", "", "5xxx", "x", "401,5xx", "600-500", "42", "1234", 429, None, "5XX", "ALL", "4X"]
)
def test_invalid_status_patterns(pattern: Any) -> None:
    with pytest.raises(ConfigError):
        validate_status_pattern(pattern)


@pytest.mark.parametrize("pattern", ["5XX", "4Xx", "All"])
def test_status_patterns_are_case_sensitive_as_in_v2(pattern: str) -> None:
    """v2's ``isStatusCodeInRange`` tests ``range.endsWith("xx")``: "5XX" never matched a status
    there. Such a key is refused (it would silently never retry), naming the spelling that works."""
    with pytest.raises(ConfigError, match=f"case-sensitive: write {pattern.lower()!r}"):
        normalize_fetch_retry({pattern: {}})
    assert not status_matches(pattern, 503)


# --- v2's key order ------------------------------------------------------------------------------


def test_integer_like_keys_come_first_ascending_then_insertion_order() -> None:
    assert js_key_order(["5xx", "429", "all", "404"]) == ["404", "429", "5xx", "all"]
    assert js_key_order(["b", "10", "a", "2", "0"]) == ["0", "2", "10", "b", "a"]
    # Not canonical array indices: stay in insertion order.
    assert js_key_order(["x", "0429", " 429", "429 ", "-1", "4294967295"]) == [
        "x", "0429", " 429", "429 ", "-1", "4294967295",
    ]  # fmt: skip
    assert js_key_order(["4294967294", "1"]) == ["1", "4294967294"]


def test_normalized_retry_keeps_v2_order() -> None:
    strategies = normalize_fetch_retry(
        {"5xx": {}, "429": {"strategy": "headers", "reset_header": "r"}, "all": {}, "404": {}}
    )
    assert strategies is not None
    assert [s.pattern for s in strategies] == ["404", "429", "5xx", "all"]
    assert select_strategy(strategies, 429, None, False) is strategies[1]
    assert select_strategy(strategies, 503, None, False) is strategies[2]
    assert select_strategy(strategies, 418, None, False) is strategies[3]
    assert normalize_fetch_retry(None) is None
    assert select_strategy(None, 500, None, False) is None


def test_display_retry_fills_defaults_in_matching_order() -> None:
    strategies = normalize_fetch_retry(
        {
            "5xx": retry.standard_backoff,  # a read-only preset is fine
            "429": {"strategy": "headers", "resetHeader": "r", "bodyFilter": {"a": [1]}},
        }
    )
    assert json.loads(json.dumps(display_retry(strategies))) == {
        "429": {
            "strategy": "headers",
            "reset_header": "r",
            "reset_format": "unix_timestamp",
            "body_filter": {"a": [1]},
        },
        "5xx": {"strategy": "backoff", **retry.standard_backoff},
    }
    assert list(display_retry(strategies) or {}) == ["429", "5xx"]
    assert display_retry(None) is None


# --- strategies ----------------------------------------------------------------------------------


def test_backoff_strategy_uses_v2_defaults_and_limit_semantics() -> None:
    (strategy,) = (
        normalize_fetch_retry({"5xx": {"strategy": "backoff", "limit": 3, "randomize": False}})
        or ()
    )
    assert strategy.kind == "backoff"
    assert dict(strategy.backoff or {}) == {
        "limit": 3, "factor": 1.8, "min_timeout_in_ms": 1000, "max_timeout_in_ms": 60000, "randomize": False,
    }  # fmt: skip
    headers: dict[str, str] = {}
    assert strategy.retry_at(attempt=1, headers=headers, now=NOW) == NOW + 1.0
    assert strategy.retry_at(attempt=2, headers=headers, now=NOW) == NOW + 1.0
    assert strategy.retry_at(attempt=3, headers=headers, now=NOW) is None  # 3 requests in all


def test_backoff_strategy_camel_case_and_random() -> None:
    (strategy,) = (
        normalize_fetch_retry({"all": {"minTimeoutInMs": 100, "maxTimeoutInMs": 150}}) or ()
    )
    assert strategy.retry_at(attempt=1, headers={}, now=NOW, random=lambda: 0.9) == NOW + 0.15


def test_headers_strategy_reads_the_reset_header_case_insensitively() -> None:
    (strategy,) = (
        normalize_fetch_retry(
            {
                "429": {
                    "strategy": "headers",
                    "resetHeader": "X-RateLimit-Reset",
                    "resetFormat": "unix_timestamp_in_ms",
                }
            }
        )
        or ()
    )
    headers = {"x-ratelimit-reset": str(int((NOW + 2) * 1000))}
    assert strategy.retry_at(attempt=1, headers=headers, now=NOW) == pytest.approx(NOW + 2)
    assert strategy.retry_at(attempt=1, headers={}, now=NOW) is None  # no header: no retry (v2)
    assert strategy.retry_at(attempt=1, headers={"x-ratelimit-reset": "soon"}, now=NOW) is None
    cap = HEADERS_STRATEGY_MAX_ATTEMPTS
    assert strategy.retry_at(attempt=cap - 1, headers=headers, now=NOW) is not None
    assert strategy.retry_at(attempt=cap, headers=headers, now=NOW) is None


def test_body_filter_matches_only_json_bodies() -> None:
    strategies = normalize_fetch_retry(
        {"500": {"bodyFilter": {"error": ["transient"]}, "limit": 9}, "5xx": {"limit": 2}}
    )
    first, second = strategies or ()
    assert select_strategy(strategies, 500, {"error": "transient"}, True) is first
    assert select_strategy(strategies, 500, {"error": "fatal"}, True) is second
    assert select_strategy(strategies, 500, "transient", False) is second
    assert select_strategy(strategies, 500, None, True) is second  # JSON null: v2 `!body`
    assert select_strategy(strategies, 404, {"error": "transient"}, True) is None


@pytest.mark.parametrize(
    ("retry", "error", "words"),
    [
        ([], ConfigError, "map status patterns"),
        ({"5xx": 3}, ConfigError, "strategy dict"),
        ({"5xx": {"strategy": "linear"}}, ConfigError, '"strategy" must be'),
        ({"5xx": {"reset_header": "r"}}, ConfigError, "unknown option"),
        ({"5xx": {"bodyFilter": {}, "body_filter": {}}}, ConfigError, "twice"),
        ({"5xx": {"factor": 0}}, ConfigError, "factor"),
        ({"429": {"strategy": "headers"}}, ConfigError, "reset_header"),
        (
            {"429": {"strategy": "headers", "reset_header": "r", "reset_format": "http_date"}},
            ConfigError,
            "reset_format",
        ),
        (
            {"429": {"strategy": "headers", "reset_header": "r", "limit": 3}},
            ConfigError,
            "unknown option",
        ),
        ({"5xx": {"body_filter": {"a": [{"$gt": "x"}]}}}, EventFilterError, "body_filter"),
    ],
)
def test_invalid_retry_options(retry: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        normalize_fetch_retry(retry)
    assert words in str(info.value)


# --- reset headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("1700000060", "unix_timestamp", NOW + 60),
        ("1700000000.5", "unix_timestamp", NOW + 0.5),
        (" 1700000060 ", "unix_timestamp", NOW + 60),
        ("1700000060000", "unix_timestamp_in_ms", NOW + 60),
        ("1700000000250", "unix_timestamp_in_ms", NOW + 0.25),
        ("2023-11-14T22:14:20Z", "iso_8601", NOW + 60),
        ("2023-11-14T22:14:20.500Z", "iso_8601", NOW + 60.5),
        ("2023-11-15T00:14:20+02:00", "iso_8601", NOW + 60),
        ("2023-11-14", "iso_8601", _dt.datetime(2023, 11, 14, tzinfo=_dt.timezone.utc).timestamp()),
        (
            "1d2h3m4.5s6ms",
            "iso_8601_duration_openai_variant",
            NOW + 86400 + 7200 + 180 + 4.5 + 0.006,
        ),
        ("6ms", "iso_8601_duration_openai_variant", NOW + 0.006),
        ("1m", "iso_8601_duration_openai_variant", NOW + 60),
        ("20s", "iso_8601_duration_openai_variant", NOW + 20),
        ("1m30.25s", "iso_8601_duration_openai_variant", NOW + 90.25),
        ("2h", "iso_8601_duration_openai_variant", NOW + 7200),
    ],
)
def test_reset_formats(value: str, fmt: str, expected: float) -> None:
    assert parse_reset(value, fmt, now=NOW) == pytest.approx(expected, abs=1e-6)


def test_iso_8601_without_offset_is_local_time() -> None:
    local = _dt.datetime(2024, 1, 2, 3, 4, 5)
    assert parse_reset("2024-01-02T03:04:05", "iso_8601", now=NOW) == local.astimezone().timestamp()


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        (None, "unix_timestamp"),
        ("", "unix_timestamp"),
        ("12abc", "unix_timestamp"),
        ("soon", "unix_timestamp_in_ms"),
        ("1e9", "unix_timestamp"),
        ("yesterday", "iso_8601"),
        ("2024-13-01T00:00:00Z", "iso_8601"),
        ("1x", "iso_8601_duration_openai_variant"),
        ("1s1m", "iso_8601_duration_openai_variant"),
        ("1700000000", "rfc_1123"),
    ],
)
def test_unreadable_reset_values(value: str | None, fmt: str) -> None:
    assert parse_reset(value, fmt, now=NOW) is None


# --- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "bounds", "expected"),
    [
        (None, FETCH_TIMEOUT_MS, 120_000),
        (10, FETCH_TIMEOUT_MS, 1_000),
        (0, FETCH_TIMEOUT_MS, 1_000),
        (-5, FETCH_TIMEOUT_MS, 1_000),
        (5_000, FETCH_TIMEOUT_MS, 5_000),
        (1_500.5, FETCH_TIMEOUT_MS, 1_501),
        (10**9, FETCH_TIMEOUT_MS, 300_000),
        (None, POLL_REQUEST_TIMEOUT_MS, 5_000),
        (60_000, POLL_REQUEST_TIMEOUT_MS, 5_000),
        (10, POLL_REQUEST_TIMEOUT_MS, 1_000),
    ],
)
def test_timeout_clamping(
    duration: float | None, bounds: tuple[int, int, int], expected: int
) -> None:
    assert clamp_timeout_ms(duration, bounds) == expected


def test_timeout_options() -> None:
    plan = normalize_timeout({"durationInMs": 2500, "retry": {"limit": 3}}, FETCH_TIMEOUT_MS)
    assert plan.duration_ms == 2500 and plan.seconds == 2.5
    assert plan.retry is not None and plan.retry["limit"] == 3
    assert plan.message == "Fetch timed out after 2500ms"
    assert normalize_timeout({"duration_in_ms": 1}, FETCH_TIMEOUT_MS).duration_ms == 1000
    assert normalize_timeout(None, FETCH_TIMEOUT_MS).display() == {
        "duration_in_ms": 120000,
        "retry": None,
    }
    for bad in (
        5,
        {"seconds": 5},
        {"duration_in_ms": "5"},
        {"duration_in_ms": 1, "durationInMs": 1},
        {"retry": {"limt": 1}},
    ):
        with pytest.raises(ConfigError):
            normalize_timeout(bad, FETCH_TIMEOUT_MS)


# --- requests ------------------------------------------------------------------------------------


def test_prepare_request_reveals_only_when_materialized() -> None:
    auth = redact_string("Bearer {}", "sk-123")
    plan = prepare_request(
        "https://api.example.com/v1/items?x=1",
        {"method": "patch", "headers": {"Authorization": auth}, "body": {"a": auth}},
    )
    assert plan.display() == {
        "method": "PATCH",
        "headers": {"Authorization": "Bearer ********"},
        "body": {"a": "Bearer ********"},
    }
    method, url, headers, content = plan.materialize()
    assert (method, url) == ("PATCH", "https://api.example.com/v1/items?x=1")
    assert ("Authorization", "Bearer sk-123") in headers
    assert ("content-type", "application/json") in headers
    assert json.loads(content or b"") == {"a": "Bearer sk-123"}
    assert plan.secrets() == ("sk-123",)
    assert task_name("fetch", plan.url) == "fetch api.example.com/v1/items"
    assert task_name("poll", "http://127.0.0.1:8080") == "poll 127.0.0.1/"


def test_prepare_request_bodies() -> None:
    text = prepare_request(
        "http://h/x", {"method": "POST", "body": "raw", "headers": {"Content-Type": "text/csv"}}
    )
    assert text.materialize()[2:] == ([("Content-Type", "text/csv")], b"raw")
    raw = prepare_request("http://h/x", {"method": "PUT", "body": b"\x00\x01"})
    assert raw.materialize()[3] == b"\x00\x01"
    assert raw.display() == {"method": "PUT", "body": "<2 bytes>"}
    typed = prepare_request(
        "http://h/x", {"method": "POST", "body": [1], "headers": {"content-type": "application/x"}}
    )
    assert typed.materialize()[2] == [("content-type", "application/x")]
    assert prepare_request("http://h/x", None).display() == {"method": "GET"}


@pytest.mark.parametrize(
    ("url", "init", "words"),
    [
        ("http://h/x", {"body": "x"}, "GET request cannot have a body"),
        ("http://h/x", {"method": "HEAD", "body": {}}, "HEAD request cannot have a body"),
        ("http://h/x", {"method": "POST", "body": {1j}}, "cannot be encoded as JSON"),
        ("http://h/x", {"method": "POST", "body": float("nan")}, "cannot be encoded as JSON"),
        ("http://h/x", {"method": "GET /"}, "HTTP method"),
        ("http://h/x", {"headers": ["a"]}, "dict of name to value"),
        ("http://h/x", {"headers": {"bad name": "v"}}, "not a valid header name"),
        ("http://h/x", {"headers": {"X": 1}}, "must be a str"),
        ("http://h/x", {"headers": {"X": "é"}}, "ASCII"),
        ("http://h/x", {"mode": "cors"}, "unknown key"),
        ("http://h/x", "GET", "must be a dict"),
        ("/relative", None, "absolute http"),
        ("ftp://h/x", None, "absolute http"),
        (b"http://h/x", None, "must be a str"),
    ],
)
def test_prepare_request_rejects(url: Any, init: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        prepare_request(url, init)
    assert words in str(info.value)


def test_rejections_never_show_a_secret_header_value() -> None:
    for bad in ("line\nbreak-SECRET", "nul\0-SECRET"):
        with pytest.raises(ConfigError) as info:
            prepare_request(
                "http://h/x", {"headers": {"Authorization": redact_string("Bearer {}", bad)}}
            )
        assert "SECRET" not in str(info.value) and "Authorization" in str(info.value)
    with pytest.raises(ConfigError, match="cannot be a redact_string"):
        prepare_request(redact_string("http://h/x?key={}", "SECRET"), None)


def test_parse_body() -> None:
    assert parse_body('{"a": 1}') == ({"a": 1}, True)
    assert parse_body("null") == (None, True)
    assert parse_body("[1, 2]") == ([1, 2], True)
    assert parse_body("hello") == ("hello", False)
    assert parse_body("") == (None, False)
    assert parse_body("  \n") == (None, False)
    assert parse_body("NaN") == ("NaN", False)  # not JSON for JavaScript either
    assert parse_body('{"a": Infinity}') == ('{"a": Infinity}', False)


def test_fetch_error_carries_status_and_body() -> None:
    error = FetchError('{"e": 1}', status=500, body={"e": 1})
    assert (str(error), error.status, error.body) == ('{"e": 1}', 500, {"e": 1})

