"""Record encoding (`_store/_codec.py`): the fast encoder must never change what is stored.

orjson encodes records when its text is exact; NaN and infinities (which orjson would write as
``null`` without a word: text holding ``null`` must decode back to the value) and values it
refuses take the strict stdlib encoder.
"""

from __future__ import annotations

import math

import pytest

from trigger_nb._exceptions import StoreError
from trigger_nb._store._codec import encode_record, loads_exact


@pytest.mark.parametrize(
    "value",
    [
        {"status": "COMPLETED", "attempts": 1, "started_at": 1796183748.961299, "ok": True},
        {"wake_at": None, "error": None, "nested": [None, {"x": None}]},
        {"text": "naïve ☃ 𝄞", "quote": '"\\', "nullable": "null"},
        {"big": 10**40, "small": -(10**30)},  # beyond 64 bits: orjson refuses them
        {"surrogate": "\udc80"},  # not UTF-8: orjson refuses it, the stdlib escapes it
        {"floats": [1e16, 1e-5, 0.1, -0.0, 5e-324]},
        [[[[[[[[[[[[[[[[[[[[{"deep": 1}]]]]]]]]]]]]]]]]]]]],
        {"floats": [0.1, 1e300, -2.5], "wake_at": None},
    ],
    ids=["task", "nulls", "unicode", "big-ints", "surrogate", "floats", "nested", "floats-and-null"],
)
def test_a_record_reads_back_as_it_was_given(value: object) -> None:
    text = encode_record("task/r/k", value)
    assert isinstance(text, str)
    assert loads_exact(text) == value
    assert text == encode_record("task/r/k", value)  # one value, one text (fenced writes compare)


def test_keys_that_are_not_str_are_stored_as_the_stdlib_stores_them() -> None:
    assert loads_exact(encode_record("k", {1: "a", 2.5: "b"})) == {"1": "a", "2.5": "b"}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["alone", "beside-null", "nested", "nested-beside-null", "in-a-tuple"])
def test_a_number_that_is_not_finite_is_refused_never_stored_as_null(bad: float, where: str) -> None:
    value = {
        "alone": {"x": bad},
        "beside-null": {"x": bad, "y": None},
        "nested": {"a": [1, {"b": [bad]}]},
        "nested-beside-null": {"a": [None, {"b": [None, bad]}], "c": None},
        "in-a-tuple": {"t": (None, bad)},
    }[where]
    with pytest.raises(StoreError, match=r"Refused to store 'run/r'.*not finite"):
        encode_record("run/r", value)


def test_a_tuple_beside_a_null_is_stored_as_a_list() -> None:
    """A value that does not come back equal from JSON (a tuple comes back a list) takes the
    stdlib, which writes the same JSON."""
    assert loads_exact(encode_record("run/r", {"t": (1, None), "n": None})) == {"t": [1, None], "n": None}
