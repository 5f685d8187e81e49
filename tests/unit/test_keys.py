"""Keys, ids, slugs and versions (SPEC §2, §4.1; v2 §2.2, §6.1).

Expected idempotency keys are computed here independently: SHA-256 over the joined string that
v2's ``[runId, parentId ?? "", cacheKey].flat().map(...).join(":")`` would build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_nb._exceptions import ConfigError, PayloadError
from trigger_nb._keys import (
    canonical_json,
    derive_run_id,
    display_key,
    idempotency_key,
    new_run_id,
    slugify_job_id,
    stable_stringify,
    task_id_for,
    validate_version,
)

RUN = "run_abc"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


# --- idempotency_key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_key", "joined"),
    [
        ("fetch-user", "run_abc::fetch-user"),
        (["fetch", "user"], "run_abc::fetch:user"),
        (("fetch", "user"), "run_abc::fetch:user"),
        (["a", ["b", "c"]], 'run_abc::a:["b","c"]'),
        (["a", ["b", ["c"]]], 'run_abc::a:["b",["c"]]'),
        (["n", 1, 1.0, 2.5, -0.0, 1e21], "run_abc::n:1:1:2.5:0:1e+21"),
        (
            ["d", {"b": 1, "a": [2, {"d": None, "c": True}]}],
            'run_abc::d:{"a":[2,{"c":true,"d":null}],"b":1}',
        ),
        ({"b": 1, "a": 2}, 'run_abc::{"a":2,"b":1}'),
        (None, "run_abc::null"),
        ([None, True, False], "run_abc::null:true:false"),
        (1, "run_abc::1"),
        (["é", "日本", "😀"], "run_abc::é:日本:😀"),
        (["u", {"é": "ü"}], 'run_abc::u:{"é":"ü"}'),
        (["x", float("nan"), float("inf")], "run_abc::x:null:null"),
        (["q", 'say "hi"'], 'run_abc::q:say "hi"'),  # string parts are used raw
        (["q", ['say "hi"']], 'run_abc::q:["say \\"hi\\""]'),  # ... nested ones are JSON
        ([], "run_abc:"),  # [].flat() adds no part
    ],
)
def test_idempotency_key_vectors(cache_key: object, joined: str) -> None:
    assert idempotency_key(RUN, None, cache_key) == sha(joined)


def test_idempotency_key_is_64_lowercase_hex() -> None:
    assert re.fullmatch("[0-9a-f]{64}", idempotency_key(RUN, None, "k"))


def test_v2_collisions_are_reproduced() -> None:
    assert idempotency_key(RUN, None, "a:b") == idempotency_key(RUN, None, ["a", "b"])
    assert idempotency_key(RUN, None, ["x", 1]) == idempotency_key(RUN, None, ["x", "1"])
    assert idempotency_key(RUN, None, 1) == idempotency_key(RUN, None, "1")
    assert idempotency_key(RUN, None, ["k"]) == idempotency_key(RUN, None, "k")


def test_keys_are_scoped_by_parent() -> None:
    top = idempotency_key(RUN, None, "step")
    child = idempotency_key(RUN, "parent0123456789abcdef00", "step")
    assert child == sha("run_abc:parent0123456789abcdef00:step")
    assert child != top
    assert idempotency_key(RUN, "", "step") == top  # v2: parentId ?? ""
    assert idempotency_key(RUN, "other", "step") != child


def test_keys_are_scoped_by_run() -> None:
    assert idempotency_key("run_1", None, "k") != idempotency_key("run_2", None, "k")


def test_dict_key_order_does_not_matter() -> None:
    a = {"b": [1, {"y": 2, "x": 1}], "a": None}
    b = {"a": None, "b": [1, {"x": 1, "y": 2}]}
    assert idempotency_key(RUN, None, ["k", a]) == idempotency_key(RUN, None, ["k", b])


@given(st.lists(st.text(), max_size=6), st.one_of(st.none(), st.text(max_size=8)))
def test_all_string_fast_path_matches_the_definition(parts: list[str], parent: str | None) -> None:
    expected = sha(":".join([RUN, parent or "", *parts]))
    assert idempotency_key(RUN, parent, parts) == expected


@pytest.mark.parametrize("bad", [{1, 2}, ["a", {1}], dt.date(2024, 1, 1), ["a", object()]])
def test_non_json_cache_key_parts_are_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="cache key"):
        idempotency_key(RUN, None, bad)


def test_circular_cache_key_is_rejected() -> None:
    loop: list[object] = ["a"]
    loop.append(loop)
    with pytest.raises(ConfigError, match="circular"):
        idempotency_key(RUN, None, ["k", loop])


def test_lone_surrogate_does_not_crash_and_matches_node_encoding() -> None:
    # Node's Buffer.from(string) encodes a lone surrogate as U+FFFD.
    assert idempotency_key(RUN, None, "a\ud800b") == sha("run_abc::a\ufffdb")


# --- stable_stringify -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (1, "1"),
        (1.0, "1"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (2.5, "2.5"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (-1.25e-9, "-1.25e-9"),
        (123456789012345680000.0, "123456789012345680000"),
        (float("nan"), "null"),
        (float("-inf"), "null"),
        ("é😀", '"é😀"'),
        ('a"b\\c\n\x01', '"a\\"b\\\\c\\n\\u0001"'),
        ("\ud800", '"\\ud800"'),
        ((1, (2,)), "[1,[2]]"),
        ({"b": 1, "a": {"d": 1, "c": 2}}, '{"a":{"c":2,"d":1},"b":1}'),
        # JS objects list integer-like keys first, in numeric order
        ({"b": 1, "a": 2, "10": 3, "9": 4, "01": 5}, '{"9":4,"10":3,"01":5,"a":2,"b":1}'),
        ({2: "a", None: "b", 1.5: "c"}, '{"2":"a","1.5":"c","null":"b"}'),
    ],
)
def test_stable_stringify_matches_javascript(value: object, expected: str) -> None:
    assert stable_stringify(value) == expected


def _numbers_as_floats(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    assert isinstance(value, dict)
    return {k: _numbers_as_floats(v) for k, v in value.items()}


@given(json_values)
def test_stable_stringify_is_json_and_canonical(value: object) -> None:
    text = stable_stringify(value)
    # JS prints 6.449951682054646e16 as 64499516820546460: the same double, not the same int.
    assert json.loads(text, parse_int=float) == _numbers_as_floats(value)
    assert stable_stringify(json.loads(text)) == text


@given(st.dictionaries(st.text(max_size=4), st.integers(), max_size=6))
def test_stable_stringify_ignores_insertion_order(d: dict[str, int]) -> None:
    assert stable_stringify(dict(reversed(list(d.items())))) == stable_stringify(d)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_stable_stringify_agrees_with_v2_in_node() -> None:
    values = [
        {"b": [1.0, 2.5, None, True], "a": {"10": 1, "9": 2, "é": "ü", "😀": 0, "\uffff": 1}},
        [1e21, 1e-7, 0.000001, 123.456, -0.0, 5e-324, 1.7976931348623157e308],
        ['quote"', "back\\slash", "ctl\x01\x1f", "\u2028"],
    ]
    # v2's IO stableStringify: sort keys recursively, then JSON.stringify
    script = """
    const values = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const sortKeys = (o) => typeof o !== "object" || o === null ? o : Array.isArray(o)
        ? o.map(sortKeys) : Object.fromEntries(Object.keys(o).sort().map(k => [k, sortKeys(o[k])]));
    process.stdout.write(JSON.stringify(values.map(v => JSON.stringify(sortKeys(v)))));
    """
    result = subprocess.run(
        ["node", "-e", script], input=json.dumps(values), capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == [stable_stringify(v) for v in values]


# --- display_key, task_id_for ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache_key", "shown"),
    [
        ("fetch", "fetch"),
        (["fetch", "user", 42], "fetch-user-42"),
        (("a", ["b", 1], {"k": None}), 'a-["b",1]-{"k":null}'),
        (7, "7"),
        (None, "null"),
    ],
)
def test_display_key(cache_key: object, shown: str) -> None:
    assert display_key(cache_key) == shown


def test_task_id_is_a_stable_prefix_of_the_key() -> None:
    key = idempotency_key(RUN, None, "k")
    assert task_id_for(key) == key[:24]
    assert task_id_for(idempotency_key(RUN, None, "k")) == task_id_for(key)
    assert task_id_for(idempotency_key(RUN, None, "other")) != task_id_for(key)


# --- slugify_job_id, validate_version -------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "slug"),
    [
        ("My Job!", "my-job"),
        ("hello-world", "hello-world"),
        ("Hello   World", "hello-world"),
        ("  padded  ", "-padded-"),
        ("tab\tand\nnewline", "tab-and-newline"),
        ("a~b._c-d", "a~b._c-d"),
        ("Café Crème", "caf-crme"),
        ("emoji 😀 job", "emoji--job"),
        ("no\u00a0break", "no-break"),  # JS \s includes NBSP
        ("sep\x1cchar", "sepchar"),  # ... but not \x1c, which Python's \s does
        ("UPPER_case.v2", "upper_case.v2"),
    ],
)
def test_slugify_job_id_like_v2(job_id: str, slug: str) -> None:
    assert slugify_job_id(job_id) == slug


@pytest.mark.parametrize("job_id", ["", "!!!", "日本語", "😀"])
def test_slugify_to_nothing_is_an_error(job_id: str) -> None:
    with pytest.raises(ConfigError, match="my-job"):
        slugify_job_id(job_id)


def test_slugify_rejects_non_strings() -> None:
    with pytest.raises(ConfigError):
        slugify_job_id(123)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["0.0.1", "1.2.3", "10.20.30", "0.0.0"])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize(
    "version", ["1.0", "1.0.0.0", "v1.0.0", "1.0.0\n", "1.0.0-beta", "１.０.０", "", "1..0", 1]
)
def test_invalid_versions(version: object) -> None:
    with pytest.raises(ConfigError, match=r"0\.0\.1"):
        validate_version(version)  # type: ignore[arg-type]


# --- canonical_json, run ids ----------------------------------------------------------------


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": [1, (2, 3)], "a": "é"}) == '{"a":"é","b":[1,[2,3]]}'
    assert canonical_json(None) == "null"


def test_canonical_json_equals_that_of_its_json_round_trip() -> None:
    value = {10: "a", 9: "b", "x": {True: 1, None: 2}}
    assert canonical_json(value) == canonical_json(json.loads(json.dumps(value)))


@given(json_values)
def test_canonical_json_is_stable_under_round_trip(value: object) -> None:
    assert canonical_json(value) == canonical_json(json.loads(canonical_json(value)))


@pytest.mark.parametrize(
    ("payload", "where", "what"),
    [
        ({"a": [1, {2, 3}]}, 'payload["a"][1]', "set"),
        ({"when": dt.datetime(2024, 1, 1)}, 'payload["when"]', "datetime"),
        ({"x": float("nan")}, 'payload["x"]', "nan"),
        ([1, object()], "payload[1]", "object"),
        ({(1, 2): 3}, "payload", "tuple"),
    ],
)
def test_canonical_json_names_path_and_type(payload: object, where: str, what: str) -> None:
    with pytest.raises(PayloadError) as info:
        canonical_json(payload)
    assert where in str(info.value)
    assert what in str(info.value)


def test_canonical_json_rejects_circular_payloads() -> None:
    d: dict[str, object] = {}
    d["self"] = d
    with pytest.raises(PayloadError, match="circular"):
        canonical_json(d)


def test_derive_run_id() -> None:
    run_id = derive_run_id("my-job", {"user": 1, "a": [1, 2]})
    expected = sha('my-job\n{"a":[1,2],"user":1}')[:24]
    assert run_id == "run_" + expected
    assert derive_run_id("my-job", {"a": [1, 2], "user": 1}) == run_id
    assert derive_run_id("my-job", {"a": (1, 2), "user": 1}) == run_id
    assert derive_run_id("other-job", {"user": 1, "a": [1, 2]}) != run_id
    assert derive_run_id("my-job", {"user": 2, "a": [1, 2]}) != run_id


def test_derive_run_id_rejects_non_json_payload() -> None:
    with pytest.raises(PayloadError):
        derive_run_id("job", {"s": {1}})


def test_new_run_id() -> None:
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch("run_[0-9a-f]{24}", i) for i in ids)
