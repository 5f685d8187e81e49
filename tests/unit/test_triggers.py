"""Triggers and event records: pure validation, matching and timing rules (SPEC §2, §3, §6.9, §7)."""

from __future__ import annotations

import datetime as dt

import pytest

from trigger_nb import (
    ConfigError,
    EventFilterError,
    PayloadError,
    cron_trigger,
    event_trigger,
    interval_trigger,
    invoke_trigger,
)
from trigger_nb._events._eventlog import delivery_time, normalize_event, trigger_run_id
from trigger_nb._events._triggers import (
    CronTrigger,
    EventTrigger,
    IntervalTrigger,
    apply_schema,
    check_trigger,
    event_matches,
    event_rule,
)

NOW = 1_700_000_000.0


def event(
    name: str = "issue.opened", payload: object = None, **fields: object
) -> dict[str, object]:
    return {
        "name": name,
        "payload": {} if payload is None else payload,
        "source": "trigger.dev",
        **fields,
    }


# -- event_trigger ----------------------------------------------------------------------------


def test_event_trigger_is_a_frozen_value_with_a_json_rule() -> None:
    trigger = event_trigger("issue.opened", filter={"repo": ["trigger_nb"]}, source="github")
    assert isinstance(trigger, EventTrigger) and trigger.kind == "event"
    assert trigger.names == ("issue.opened",)
    assert trigger.rule() == {
        "names": ["issue.opened"],
        "source": "github",
        "filter": {"repo": ["trigger_nb"]},
        "context_filter": None,
    }
    assert trigger == event_trigger(
        "issue.opened", filter={"repo": ["trigger_nb"]}, source="github"
    )
    with pytest.raises(AttributeError):
        trigger.source = "other"  # type: ignore[misc]


def test_event_trigger_accepts_a_list_of_names() -> None:
    trigger = event_trigger(["a", "b"])
    assert trigger.names == ("a", "b")
    assert trigger.matches(event("b")) and not trigger.matches(event("c"))


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"repo": "trigger_nb"},  # a bare value, not a list
        {"n": [{"$unknown": 1}]},  # unknown operator
        {"n": [{"$gt": "one"}]},  # wrong operand type
        ["repo"],  # not a dict
    ],
)
def test_a_malformed_filter_is_rejected_when_the_trigger_is_built(bad_filter: object) -> None:
    with pytest.raises(EventFilterError):
        event_trigger("x", filter=bad_filter)  # type: ignore[arg-type]
    with pytest.raises(EventFilterError):
        event_trigger("x", context_filter=bad_filter)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", [], [""], [1], None, 3])
def test_a_bad_event_name_is_a_config_error(name: object) -> None:
    with pytest.raises(ConfigError, match="event name|event names"):
        event_trigger(name)  # type: ignore[arg-type]


def test_bad_source_and_schema_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="source"):
        event_trigger("x", source="")
    with pytest.raises(ConfigError, match="schema"):
        event_trigger("x", schema="not callable")  # type: ignore[arg-type]


# -- matching -----------------------------------------------------------------------------------


def test_name_must_match_exactly() -> None:
    rule = event_rule("issue.opened")
    assert event_matches(rule, event("issue.opened"))
    assert not event_matches(rule, event("Issue.Opened"))
    assert not event_matches(rule, event("issue.opened.extra"))


def test_no_source_means_any_source_but_a_given_source_must_match() -> None:
    assert event_matches(event_rule("x"), event("x", source="github"))  # deliberate fix of v2
    assert event_matches(event_rule("x", source="github"), event("x", source="github"))
    assert not event_matches(event_rule("x", source="github"), event("x"))


def test_filter_applies_to_the_payload_and_context_filter_to_the_context() -> None:
    rule = event_rule("x", filter={"n": [{"$gt": 1}]}, context_filter={"user": ["ada"]})
    assert event_matches(rule, event("x", {"n": 2}, context={"user": "ada"}))
    assert not event_matches(rule, event("x", {"n": 1}, context={"user": "ada"}))
    assert not event_matches(rule, event("x", {"n": 2}, context={"user": "bob"}))
    assert not event_matches(rule, event("x", {"n": 2}, context=None))


def test_multi_operator_objects_check_every_operator() -> None:
    rule = event_rule("x", filter={"n": [{"$gt": 1, "$lt": 5}]})
    assert event_matches(rule, event("x", {"n": 3}))
    assert not event_matches(rule, event("x", {"n": 7}))  # v2 only tested $gt


# -- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 0.5, -1, True, "5", float("nan"), float("inf"), None])
def test_interval_must_be_a_number_of_at_least_one_second(seconds: object) -> None:
    with pytest.raises(ConfigError):
        interval_trigger(seconds)  # type: ignore[arg-type]


def test_interval_accepts_one_second_and_fractions_above() -> None:
    assert interval_trigger(1) == IntervalTrigger(seconds=1)
    assert interval_trigger(1.5).seconds == 1.5
    assert interval_trigger(2.0).describe() == "every 2 s"


def test_interval_skips_missed_slots_instead_of_bursting() -> None:
    trigger = interval_trigger(10)
    assert trigger.first_due(NOW) == NOW + 10
    assert trigger.next_after(NOW, NOW - 1) == NOW  # still ahead: unchanged
    assert trigger.next_after(NOW, NOW) == NOW + 10
    assert (
        trigger.next_after(NOW, NOW + 35) == NOW + 40
    )  # three slots missed: one late run, then the grid


@pytest.mark.parametrize(
    "expression",
    ["* * * *", "* * * * * *", "61 * * * *", "* 25 * * *", "@hourly", "", "every minute"],
)
def test_cron_needs_five_valid_fields(expression: str) -> None:
    with pytest.raises(ConfigError, match="Example"):
        cron_trigger(expression)


def test_cron_is_utc_and_normalises_spacing() -> None:
    trigger = cron_trigger("  */5   * * * * ")
    assert trigger == CronTrigger(cron="*/5 * * * *")
    assert trigger.describe() == "cron */5 * * * * (UTC)"
    base = dt.datetime(2024, 5, 1, 12, 2, 30, tzinfo=dt.timezone.utc).timestamp()
    expected = dt.datetime(2024, 5, 1, 12, 5, tzinfo=dt.timezone.utc).timestamp()
    assert trigger.first_due(base) == expected
    assert (
        cron_trigger("0 9 * * *").first_due(base)
        == dt.datetime(2024, 5, 2, 9, 0, tzinfo=dt.timezone.utc).timestamp()
    )


def test_cron_rejects_a_non_string() -> None:
    with pytest.raises(ConfigError):
        cron_trigger(5)  # type: ignore[arg-type]


def test_invoke_trigger_and_trigger_check() -> None:
    assert invoke_trigger().kind == "invoke"
    check_trigger(None, "job")
    check_trigger(interval_trigger(1), "job")
    with pytest.raises(ConfigError, match="event_trigger"):
        check_trigger("issue.opened", "job")


def test_apply_schema_accepts_callables_and_model_classes() -> None:
    class Model:
        @classmethod
        def model_validate(cls, value: object) -> tuple[str, object]:
            return ("model", value)

    assert apply_schema(lambda v: v["n"] * 2, {"n": 2}) == 4
    assert apply_schema(Model, {"n": 1}) == ("model", {"n": 1})


# -- event records --------------------------------------------------------------------------------


def test_normalize_event_fills_v2_defaults() -> None:
    record = normalize_event({"name": "x"}, now=NOW)
    assert (
        record["payload"] == {} and record["source"] == "trigger.dev" and record["context"] is None
    )
    assert record["id"].startswith("evt_") and len(record["id"]) > 10
    assert record["timestamp"] == dt.datetime.fromtimestamp(NOW, dt.timezone.utc).isoformat()
    assert normalize_event({"name": "x"}, now=NOW, default_id="evt_fixed")["id"] == "evt_fixed"
    assert (
        normalize_event({"name": "x", "id": "mine"}, now=NOW, default_id="evt_fixed")["id"]
        == "mine"
    )


def test_normalize_event_timestamps_become_utc_iso() -> None:
    assert normalize_event({"name": "x", "timestamp": "2024-05-01T12:00:00Z"}, now=NOW)[
        "timestamp"
    ] == ("2024-05-01T12:00:00+00:00")
    aware = dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert (
        normalize_event({"name": "x", "timestamp": aware}, now=NOW)["timestamp"]
        == "2024-05-01T12:00:00+00:00"
    )
    with pytest.raises(PayloadError, match="ISO 8601"):
        normalize_event({"name": "x", "timestamp": "yesterday"}, now=NOW)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"payload": {}}, '"name"'),
        ({"name": ""}, '"name"'),
        ({"name": 3}, '"name"'),
        ("issue.opened", "must be a dict"),
        ({"name": "x", "payload": {"when": dt.date(2024, 1, 1)}}, "payload is not JSON"),
        ({"name": "x", "context": {1, 2}}, "context is not JSON"),
        ({"name": "x", "paylod": {}}, "Unknown event field"),
        ({"name": "x", "id": ""}, "id"),
        ({"name": "x", "source": 5}, "source"),
    ],
)
def test_normalize_event_rejects_malformed_events(bad: object, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        normalize_event(bad, now=NOW)


def test_delivery_time_deliver_at_wins_over_deliver_after() -> None:
    assert delivery_time(None, None, NOW) == NOW
    assert delivery_time(None, 5, NOW) == NOW + 5
    assert delivery_time(NOW + 100, 5, NOW) == NOW + 100
    at = dt.datetime.fromtimestamp(NOW + 7, dt.timezone.utc)
    assert delivery_time(at, None, NOW) == NOW + 7
    # PayloadError: delivery times are part of the event sent (a 400 at the receiver).
    for deliver_at, deliver_after in ((None, -1), ("tomorrow", None), (1e20, None), (None, float("nan"))):
        with pytest.raises(PayloadError):
            delivery_time(deliver_at, deliver_after, NOW)


def test_trigger_run_ids_are_stable_and_distinct() -> None:
    assert trigger_run_id("job", "event", "e1") == trigger_run_id("job", "event", "e1")
    ids = {
        trigger_run_id("job", "event", "e1"),
        trigger_run_id("job", "event", "e2"),
        trigger_run_id("other", "event", "e1"),
        trigger_run_id("job", "schedule", "e1"),
    }
    assert len(ids) == 4
    assert all(i.startswith("run_") and len(i) == 28 for i in ids)
