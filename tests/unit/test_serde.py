"""Outputs, error records and display values (SPEC §4.5, §5, §11; v2 §2.8)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_nb._exceptions import ConfigError, StoreError, TaskOutputError
from trigger_nb._serde import (
    DEFAULT_OUTPUT_LIMIT,
    decode_output,
    encode_output,
    error_record,
    json_tree,
    jsonable_for_display,
    loads_json,
)


class Thing:
    """A plain object: not JSON, picklable."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing) and other.n == self.n


# --- JSON round trip ------------------------------------------------------------------------


def test_default_limit_is_64_mib() -> None:
    assert DEFAULT_OUTPUT_LIMIT == 64 * 1024 * 1024


def test_round_trip_changes_like_v2() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    out = encode_output(
        {
            "pair": (1, 2),
            "when": when,
            "day": dt.date(2024, 5, 6),
            "at": dt.time(7, 8),
            "nan": math.nan,
            "inf": [math.inf, -math.inf],
            "nested": {"t": (1, (2, 3))},
        }
    )
    assert out.encoding == "json"
    assert out.value == {
        "pair": [1, 2],
        "when": "2024-05-06T07:08:09+00:00",
        "day": "2024-05-06",
        "at": "07:08:00",
        "nan": None,
        "inf": [None, None],
        "nested": {"t": [1, [2, 3]]},
    }
    assert out.value == json.loads(out.data)
    assert decode_output(out.encoding, out.data) == out.value


def test_value_is_a_fresh_copy() -> None:
    original = {"rows": [1, 2]}
    out = encode_output(original)
    assert out.value == original and out.value is not original
    original["rows"].append(3)
    assert out.value == {"rows": [1, 2]}


@pytest.mark.parametrize("value", [None, "text", "", 0, -7, 10**20, True, False, 1.5])
def test_scalars(value: Any) -> None:
    out = encode_output(value)
    assert out.data == json.dumps(value)
    assert out.value == value == json.loads(out.data)
    assert type(out.value) is type(value)


def test_none_is_a_legal_output() -> None:
    out = encode_output(None)
    assert (out.encoding, out.data, out.value) == ("json", "null", None)


def test_non_string_keys_convert_like_json_dumps() -> None:
    out = encode_output({2: "a", None: "b", True: "c", 1.5: "d", "e": math.nan})
    assert out.value == {"2": "a", "null": "b", "true": "c", "1.5": "d", "e": None}


def test_data_is_ascii_so_its_length_is_its_size() -> None:
    out = encode_output({"text": "é😀 \ud800"})
    assert isinstance(out.data, str) and out.data.isascii()
    assert out.value == {"text": "é😀 \ud800"}


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.dates()
    | st.datetimes(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_like)
def test_value_equals_a_fresh_json_loads(value: Any) -> None:
    out = encode_output(value)
    assert out.encoding == "json"
    assert out.value == json.loads(out.data)
    assert encode_output(out.value).data == out.data  # a replayed value encodes the same


# --- JSON errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({1, 2}, "output has type set", "set"),
        ({"rows": [0, 1, 2, {"when": Thing(1)}]}, 'output["rows"][3]["when"]', "Thing"),
        ([(1, 2), {"a": {"b": b"bytes"}}], 'output[1]["a"]["b"]', "bytes"),
        ({"x": [math.nan, {"y": frozenset()}]}, 'output["x"][1]["y"]', "frozenset"),
        ({"m": {(1, 2): "tuple key"}}, 'output["m"] has a dict key of type tuple', "tuple"),
        ({"n": 1, "é": [object()]}, 'output["é"][0]', "object"),
    ],
)
def test_non_json_output_names_key_type_and_path(value: Any, path: str, type_name: str) -> None:
    with pytest.raises(TaskOutputError) as info:
        encode_output(value, cache_key="fetch-rows")
    message = str(info.value)
    assert "'fetch-rows'" in message
    assert path in message
    assert type_name in message
    assert 'serializer="pickle"' in message and "--pickle" in message


def test_circular_output_is_an_error_with_its_path() -> None:
    value: dict[str, Any] = {"a": [1]}
    value["a"].append(value)
    with pytest.raises(TaskOutputError, match=r'output\["a"\]\[1\] is a circular reference'):
        encode_output(value, cache_key="loop")


def test_error_without_cache_key_still_reads_well() -> None:
    with pytest.raises(TaskOutputError, match="^The task returned"):
        encode_output({1})


def test_unknown_serializer() -> None:
    with pytest.raises(ConfigError, match="pickle"):
        encode_output(1, serializer="yaml")


# --- size limit -----------------------------------------------------------------------------


def test_size_limit_is_measured_on_encoded_bytes() -> None:
    value = "x" * 100  # encodes to 102 bytes with its quotes
    assert encode_output(value, limit=102).value == value
    with pytest.raises(TaskOutputError) as info:
        encode_output(value, limit=101, cache_key="big")
    message = str(info.value)
    assert "'big'" in message and "102 bytes" in message and "101 bytes" in message
    assert "output_limit" in message


def test_size_limit_counts_escaped_non_ascii() -> None:
    with pytest.raises(TaskOutputError, match="8 bytes"):
        encode_output("é", limit=7)  # "\u00e9" with quotes


def test_size_limit_applies_to_pickle_too() -> None:
    with pytest.raises(TaskOutputError, match="pickle"):
        encode_output([Thing(i) for i in range(100)], serializer="pickle", limit=100)


# --- pickle ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [Thing(3), {1, 2, 3}, {"rows": [Thing(1)], "n": 1}])
def test_pickle_fallback_for_non_json_values(value: Any) -> None:
    out = encode_output(value, serializer="pickle")
    assert out.encoding == "pickle"
    assert isinstance(out.data, bytes)
    assert out.value == value and out.value is not value
    assert decode_output("pickle", out.data) == value


@pytest.mark.parametrize("value", [{"a": (1, 2)}, [1, "x"], None, dt.date(2024, 1, 1), math.nan])
def test_json_values_stay_json_under_pickle(value: Any) -> None:
    assert encode_output(value, serializer="pickle") == encode_output(value)


def test_unpicklable_value_is_an_error_naming_both_failures() -> None:
    with pytest.raises(TaskOutputError) as info:
        encode_output({"lock": threading.Lock()}, serializer="pickle", cache_key="k")
    message = str(info.value)
    assert 'output["lock"]' in message and "lock" in message and "pickling it failed" in message


# --- decode_output --------------------------------------------------------------------------


def test_decode_output() -> None:
    assert decode_output("json", None) is None
    assert decode_output("pickle", None) is None
    assert decode_output("json", '{"a":[1]}') == {"a": [1]}
    assert decode_output("json", b'{"a":[1]}') == {"a": [1]}
    with pytest.raises(StoreError, match="encoding"):
        decode_output("yaml", "a: 1")
    with pytest.raises(StoreError):
        decode_output("pickle", "not bytes")


# --- jsonable_for_display -------------------------------------------------------------------


def test_jsonable_for_display_replaces_what_json_cannot_hold() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4)
    shown = jsonable_for_display(
        {"s": {1}, "t": (1, 2), "when": when, "nan": math.nan, (1, 2): "k", "obj": Thing(1)}
    )
    assert shown["s"] == "{1}"
    assert shown["t"] == [1, 2]
    assert shown["when"] == "2024-01-02T03:04:00"
    assert shown["nan"] is None
    assert shown["(1, 2)"] == "k"
    assert shown["obj"].startswith("<") and "Thing" in shown["obj"]
    json.dumps(shown, allow_nan=False)


def test_jsonable_for_display_never_raises() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    loop: list[Any] = []
    loop.append(loop)
    shown = jsonable_for_display({"bad": BadRepr(), "loop": loop})
    assert "BadRepr" in shown["bad"]
    json.dumps(shown)


# --- error_record ---------------------------------------------------------------------------


def users_callback(path: str, obj: Any, reason: str) -> Any:
    raise ValueError(f"boom at {path}")


def test_error_record_shape() -> None:
    record = error_record(KeyError("k"))
    assert record == {"name": "KeyError", "message": "'k'", "stack": "KeyError: 'k'\n"}


def test_error_record_hides_trigger_nb_frames() -> None:
    try:
        # json_tree (trigger_nb) calls back into user code, which raises
        json_tree({"a": {1}}, root="x", dates=False, nan_to_null=False, on_bad=users_callback)
    except ValueError as exc:
        record = error_record(exc)
        full = error_record(exc, user_frames_only=False)
    assert record["name"] == "ValueError"
    assert record["message"] == 'boom at x["a"]'
    stack = record["stack"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "test_error_record_hides_trigger_nb_frames" in stack
    assert "users_callback" in stack
    assert f"{os.sep}trigger_nb{os.sep}" not in stack
    assert stack.endswith('ValueError: boom at x["a"]\n')
    assert f"trigger_nb{os.sep}_serde.py" in full["stack"]


def test_error_record_hides_asyncio_and_executor_frames() -> None:
    def sync_user_code() -> None:
        raise RuntimeError("in a worker thread")

    async def engine() -> dict[str, str]:
        try:
            await asyncio.get_running_loop().run_in_executor(None, sync_user_code)
        except RuntimeError as exc:
            return error_record(exc)
        raise AssertionError("unreachable")

    stack = asyncio.run(engine())["stack"]
    assert "sync_user_code" in stack
    for hidden in (f"{os.sep}asyncio{os.sep}", f"concurrent{os.sep}futures", "threading.py"):
        assert hidden not in stack
    assert stack.endswith("RuntimeError: in a worker thread\n")


def test_error_record_with_only_hidden_frames_keeps_the_last_line() -> None:
    try:
        encode_output(1, serializer="yaml")
    except ConfigError as exc:
        assert exc.__traceback__ is not None
        exc.__traceback__ = exc.__traceback__.tb_next  # drop this test's own frame
        stack = error_record(exc)["stack"]
    assert "Traceback" not in stack
    assert stack.strip().endswith(
        'ConfigError: serializer must be "json" or "pickle", not \'yaml\'.'
    )
    assert stack.count("\n") == 1


def test_error_record_keeps_chained_exceptions() -> None:
    try:
        try:
            empty: dict[str, int] = {}
            empty["missing"]
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as exc:
        stack = error_record(exc)["stack"]
    assert "KeyError: 'missing'" in stack
    assert "direct cause" in stack
    assert stack.endswith("ValueError: outer\n")


@pytest.mark.parametrize(
    "text",
    ['{"ok":true,"n":1}', "[1,2.5,null]", '"x"', "123456789012345678901234567890", " 1 ", '{"a": [ 1 ] }\n'],
)
def test_loads_json_decodes_as_json_loads_does(text: str) -> None:
    assert loads_json(text) == json.loads(text)
    assert type(loads_json(text)) is type(json.loads(text))  # a big int stays an int


@pytest.mark.parametrize("text", ["", "{", "1 2", "nul", "[1,]"])
def test_loads_json_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_json(text)
