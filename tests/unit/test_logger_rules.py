"""The logger's pure rules (SPEC §6.7, §12; v2 §5.6): level filter, log keys, exception params."""

from __future__ import annotations

import pytest

from trigger_nb import ConfigError
from trigger_nb._io._library import LOG_LEVELS, LogKeys, log_params, satisfies_log_level
from trigger_nb._keys import idempotency_key

# job level -> levels recorded, by the intended rule idx(level) <= idx(job level).
RECORDED = {
    "log": {"log"},
    "error": {"log", "error"},
    "warn": {"log", "error", "warn"},
    "info": {"log", "error", "warn", "info"},
    "debug": {"log", "error", "warn", "info", "debug"},
}


@pytest.mark.parametrize("job_level", LOG_LEVELS)
@pytest.mark.parametrize("level", LOG_LEVELS)
def test_intended_level_rule(level: str, job_level: str) -> None:
    assert satisfies_log_level(level, job_level) is (level in RECORDED[job_level])


def test_not_the_2_1_8_bug() -> None:
    # v2 2.1.8+ compared against "info" whatever the job said: errors vanished at "warn",
    # debug messages showed at "info". The intended rule does neither.
    assert satisfies_log_level("error", "warn")
    assert satisfies_log_level("log", "log")
    assert not satisfies_log_level("debug", "info")


@pytest.mark.parametrize(
    ("level", "job_level"), [("trace", "info"), ("info", "verbose"), ("INFO", "info")]
)
def test_unknown_levels_are_rejected(level: str, job_level: str) -> None:
    with pytest.raises(ConfigError, match="Unknown log level"):
        satisfies_log_level(level, job_level)


def test_log_keys_count_per_parent_message_and_level() -> None:
    keys = LogKeys()
    assert keys.next(None, "hi", "INFO") == ["hi", "INFO", 1]
    assert keys.next(None, "hi", "INFO") == ["hi", "INFO", 2]
    assert keys.next(None, "hi", "WARN") == ["hi", "WARN", 1]
    assert keys.next("parent-1", "hi", "INFO") == ["hi", "INFO", 1]
    assert keys.next(None, "other", "INFO") == ["other", "INFO", 1]


def test_log_keys_are_the_same_in_every_execution_and_unique_within_one() -> None:
    calls = [(None, "a", "INFO"), (None, "a", "INFO"), ("p", "a", "INFO"), (None, "a", "INFO")]

    def execution() -> list[str]:
        keys = LogKeys()  # one per execution, as the io object is
        return [
            idempotency_key("run_1", parent, keys.next(parent, msg, lvl))
            for parent, msg, lvl in calls
        ]

    first, replay = execution(), execution()
    assert first == replay
    assert len(set(first)) == len(first)


def test_exception_properties_become_error_records() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        params = log_params(exc)
    assert params["name"] == "KeyError"
    assert params["message"] == "'missing'"
    assert "KeyError: 'missing'" in params["stack"]
    assert set(params) == {"name", "message", "stack"}


def test_other_properties_are_kept() -> None:
    assert log_params({"a": 1}) == {"a": 1}
    assert log_params(None) is None
