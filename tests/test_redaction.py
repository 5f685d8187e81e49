"""``redact_string``: sent in full, never shown or stored (SPEC §6.5, §8; v2 §2.11).

The integration tests scan the raw bytes of every file under the store directory (the SQLite
database, its WAL, diskcache value files) after the run and again after ``client.close()``.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import secrets
from pathlib import Path
from typing import Any

import pytest
from _support import ScriptedServer, Step

import trigger_nb
from trigger_nb import TriggerClient, redact_string
from trigger_nb._exceptions import RunFailedError
from trigger_nb._redact import REDACTED, RedactedString, conceal, reveal, scrub, secrets_in
from trigger_nb._serde import jsonable_for_display

RESULT_TIMEOUT = 10


def new_secret() -> str:
    return "sk-live-" + secrets.token_hex(16)


def files_containing(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose raw bytes contain ``needle`` (UTF-8)."""
    data = needle.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


# --- the object --------------------------------------------------------------------------------


def test_every_display_form_hides_the_values() -> None:
    secret = new_secret()
    value = redact_string("Bearer {}", secret)

    assert trigger_nb.redact_string is redact_string
    assert isinstance(value, RedactedString)
    old_style = "%s" % (value,)  # noqa: UP031 (the logging style, on purpose)
    for shown in (str(value), f"{value}", old_style, json.dumps(value), value + ""):
        assert secret not in shown
        assert "Bearer ********" in shown
    assert repr(value) == "RedactedString('Bearer ********')"
    assert json.dumps({"h": value}) == '{"h": "Bearer ********"}'
    assert json.dumps(jsonable_for_display({"h": [value]})) == '{"h": ["Bearer ********"]}'
    assert secret not in repr(vars(value))
    assert value._reveal() == f"Bearer {secret}"


def test_several_placeholders_and_numbered_ones() -> None:
    value = redact_string("{}:{} at {{host}}", "user", "pw")
    assert str(value) == "********:******** at {host}"
    assert value._reveal() == "user:pw at {host}"
    swapped = redact_string("{1}-{0}", "a", "b")
    assert (str(swapped), swapped._reveal()) == ("********-********", "b-a")
    nested = redact_string("Basic {}", redact_string("{}", "inner-secret"))
    assert nested._reveal() == "Basic inner-secret"
    assert "inner-secret" in secrets_in(nested)


def test_it_is_immutable_and_pickles_and_copies_without_the_secret() -> None:
    secret = new_secret()
    value = redact_string("token={}", secret)
    with pytest.raises(AttributeError):
        value._hidden = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del value._hidden
    assert copy.copy(value) is value and copy.deepcopy({"v": value})["v"] is value
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps({"v": [value]}, protocol=protocol)
        assert secret.encode() not in data
        assert pickle.loads(data) == {"v": ["token=********"]}


@pytest.mark.parametrize(
    ("template", "values"),
    [
        ("Bearer {}", ()),
        ("Bearer {}", ("a", "b")),
        ("{name}", ("a",)),
        ("{0}{}", ("a", "b")),
        ("{0}{2}", ("a", "b")),
        ("{!r}", ("a",)),
        ("{:>10}", ("a",)),
        ("{", ("a",)),
    ],
)
def test_bad_templates_raise_without_showing_the_values(
    template: str, values: tuple[str, ...]
) -> None:
    with pytest.raises(TypeError) as info:
        redact_string(template, *(f"VALUE-{v}" for v in values))
    assert "VALUE-" not in str(info.value)


def test_template_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="template must be a str"):
        redact_string(b"Bearer {}", "x")  # type: ignore[arg-type]


def test_reveal_conceal_and_scrub_helpers() -> None:
    secret = 's3cr"et\n'
    value = {"a": [redact_string("x{}", secret)], "b": "plain"}
    assert reveal(value) == {"a": ["x" + secret], "b": "plain"}
    concealed = conceal(value)
    assert concealed == {"a": ["x********"], "b": "plain"}
    assert type(concealed["a"][0]) is str
    messages = [
        f"echo {secret}",
        f"echo {secret!r}",
        f"echo {json.dumps(secret)}",
        f"Illegal header value {secret.encode()!r}",
    ]
    for message in messages:
        cleaned = scrub({"m": [message]}, secrets_in(value))["m"][0]
        assert "s3cr" not in cleaned, cleaned
        assert REDACTED in cleaned


# --- end to end: nothing under the store directory -----------------------------------------------


def echo_auth(headers: dict[str, str]) -> dict[str, Any]:
    return {"you_sent": headers.get("Authorization")}


def test_a_secret_header_reaches_the_server_but_nothing_in_the_store(
    tmp_path: Path, server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = new_secret()
    other = new_secret()
    ok_url = server.script("/ok", Step(200, {"ok": True}))
    echo_url = server.script("/echo-error", Step(500, echo_auth))
    poll_url = server.script("/poll", Step(202, echo_auth), Step(200, {"done": True}))
    store = tmp_path / "store"
    client = TriggerClient(dir=str(store))
    try:

        @client.define_job(id="secret")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            auth = {"Authorization": redact_string("Bearer {}", secret)}
            init = {
                "method": "POST",
                "headers": {**auth, "X-Other": redact_string("{}", other)},
                "body": {"q": 1},
            }
            ok = await io.background_fetch_response("ok", ok_url, init, retry={"5xx": {"limit": 2}})
            polled = await io.background_poll(
                "poll",
                {
                    "url": poll_url,
                    "request_init": {"headers": auth},
                    "interval": 0.1,
                    "response_filter": {"status": [200]},
                },
            )
            shown = await io.run_task("params", lambda: 1, params={"auth": auth["Authorization"]})
            await io.background_fetch("echo", echo_url, {"headers": auth})
            return [ok["data"], polled, shown]

        run = client.invoke_sync("secret")
        with pytest.raises(RunFailedError) as info:
            run.result(timeout=RESULT_TIMEOUT)

        # The server got the real values...
        assert server.seen("/ok")[0].headers["Authorization"] == f"Bearer {secret}"
        assert server.seen("/ok")[0].headers["X-Other"] == other
        assert all(r.headers["Authorization"] == f"Bearer {secret}" for r in server.requests)
        # ...the log shows ******** ...
        tasks = {t["display_key"]: t for t in run.tasks if t["parent_id"] is None}
        assert tasks["ok"]["params"]["request_init"]["headers"] == {
            "Authorization": "Bearer ********",
            "X-Other": "********",
        }
        assert tasks["params"]["params"] == {"auth": "Bearer ********"}
        # ...an echoed secret is scrubbed from errors and attempt entries...
        assert json.loads(run.error["message"]) == {"you_sent": "Bearer ********"}
        assert secret not in str(info.value)
        _, poll_attempts = _children(run, tasks["poll"])
        assert poll_attempts[0]["params"]["body"] == {"you_sent": "Bearer ********"}
        # ...and no byte of the store holds it.
        for needle in (secret, other):
            assert files_containing(store, needle) == []
            assert needle not in json.dumps(run.tasks) + json.dumps(run.record)
            assert needle not in caplog.text
    finally:
        client.close()
    assert list(store.rglob("*"))  # the scan did look at files
    for needle in (secret, other):
        assert files_containing(store, needle) == []


def _children(run: Any, parent: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return parent, [t for t in run.tasks if t["parent_id"] == parent["id"]]


def test_a_network_error_with_a_secret_header_stores_nothing(
    tmp_path: Path, server: ScriptedServer
) -> None:
    secret = new_secret()
    url = server.url("/gone")
    server.stop()
    store = tmp_path / "store"
    client = TriggerClient(dir=str(store))
    try:

        @client.define_job(id="down")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            return await io.background_fetch(
                "get", url, {"headers": {"Authorization": redact_string("Bearer {}", secret)}}
            )

        run = client.invoke_sync("down")
        with pytest.raises(RunFailedError):
            run.result(timeout=RESULT_TIMEOUT)
        assert run.error["message"].startswith("Fetch failed: ConnectError")
    finally:
        client.close()
    assert files_containing(store, secret) == []


# --- encoded echoes, response headers, redirects (issue 9 item 8) ----------------------------------


def awkward_secret() -> str:
    """A secret whose URL-encoded, base64 and hex forms all differ from it."""
    return "sk/live+" + secrets.token_hex(8) + " =x&y"


def encoded_forms(secret: str) -> dict[str, str]:
    import base64
    from urllib.parse import quote, quote_plus

    raw = secret.encode()
    return {
        "quote": quote(secret, safe=""),
        "quote_lower": quote(secret, safe="").lower(),
        "quote_plus": quote_plus(secret),
        "base64": base64.b64encode(raw).decode(),
        "base64_url_unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": raw.hex(),
    }


def test_a_secret_echoed_encoded_in_an_error_body_or_in_a_2xx_header_is_not_stored(
    tmp_path: Path, server: ScriptedServer
) -> None:
    secret = awkward_secret()
    forms = encoded_forms(secret)
    assert all(form != secret for form in forms.values())
    error_url = server.script("/encoded", Step(500, lambda headers: {"echo": forms}))
    ok_url = server.script(
        "/ok", Step(200, {"ok": True}, headers={"x-echo": secret, "x-echo-b64": forms["base64"]})
    )
    store = tmp_path / "store"
    with TriggerClient(dir=str(store)) as client:

        @client.define_job(id="echo")
        async def job(payload: Any, io: Any, ctx: Any) -> Any:
            init = {"headers": {"X-Key": redact_string("{}", secret)}}
            reply = await io.background_fetch_response("ok", ok_url, init)
            try:
                await io.background_fetch("err", error_url, init)
            except Exception as exc:  # noqa: BLE001 - the TaskError's message is checked below
                return {"headers": reply["headers"], "error": str(exc)}
            return None

        run = client.invoke_sync("echo")
        out = run.result(timeout=RESULT_TIMEOUT)
        assert server.seen("/ok")[0].headers["X-Key"] == secret
        assert out["headers"]["x-echo"] == REDACTED and out["headers"]["x-echo-b64"] == REDACTED
        for name, form in forms.items():
            assert form not in out["error"], name
            assert files_containing(store, form) == [], name
        assert files_containing(store, secret) == []


def test_secret_headers_are_not_sent_to_another_origin_on_a_redirect(
    tmp_path: Path, server: ScriptedServer
) -> None:
    secret = new_secret()
    elsewhere = ScriptedServer()
    try:
        foreign = elsewhere.script("/landing", Step(200, {"where": "elsewhere"}))
        home = server.script("/landing", Step(200, {"where": "home"}))
        away = server.script("/away", Step(302, None, headers={"location": foreign}))
        stay = server.script("/stay", Step(307, None, headers={"location": home}))
        with TriggerClient(dir=str(tmp_path / "store")) as client:

            @client.define_job(id="redirects")
            async def job(payload: Any, io: Any, ctx: Any) -> Any:
                init = {
                    "headers": {
                        "Authorization": redact_string("Bearer {}", secret),
                        "X-Api-Key": redact_string("{}", secret),
                        "X-Plain": "visible",
                    }
                }
                return [
                    await io.background_fetch("away", away, init),
                    await io.background_fetch("stay", stay, init),
                ]

            run = client.invoke_sync("redirects")
            assert run.result(timeout=RESULT_TIMEOUT) == [{"where": "elsewhere"}, {"where": "home"}]
        [first] = server.seen("/away")
        assert first.headers["X-Api-Key"] == secret
        [landed] = elsewhere.seen("/landing")
        assert "X-Api-Key" not in landed.headers and "Authorization" not in landed.headers
        assert landed.headers["X-Plain"] == "visible"
        [same_origin] = server.seen("/landing")  # the same origin still gets them
        assert same_origin.headers["X-Api-Key"] == secret
        assert same_origin.headers["Authorization"] == f"Bearer {secret}"
    finally:
        elsewhere.stop()
