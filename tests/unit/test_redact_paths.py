"""The display redactor of ``redact={"paths": [...]}`` (v2 §2.11)."""

from __future__ import annotations

from trigger_nb._notebook._display import redact_paths


def test_redact_paths_name_array_items_by_canonical_index_only() -> None:
    """v2 walks with ``node[part]``: an array has an own property "1", not "01" nor " 1"."""
    value = {"items": ["a", "b", "c"]}
    assert redact_paths(value, ["items.1"]) == {"items": ["a", "[REDACTED]", "c"]}
    for path in ("items.01", "items. 1", "items.1.0", "items.\u0661", "items.3", "items.-1"):
        assert redact_paths(value, [path]) == value, path
    assert redact_paths(value, ["items.0"]) == {"items": ["[REDACTED]", "b", "c"]}
