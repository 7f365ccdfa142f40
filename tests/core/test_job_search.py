"""What a user types to search jobs' args or meta, as the document they must contain."""

from __future__ import annotations

import pytest

from skiplock.job_search import containment


@pytest.mark.parametrize(
    "text, document",
    [
        ('{"user_id": 42}', {"user_id": 42}),
        ("user_id=42", {"user_id": 42}),
        ("user_id=42 plan=pro", {"user_id": 42, "plan": "pro"}),
        ('user_id="42"', {"user_id": "42"}),
        ("ok=true gone=null", {"ok": True, "gone": None}),
        ("address.city=Lyon address.zip=69001", {"address": {"city": "Lyon", "zip": 69001}}),
        ("  spaced=1  ", {"spaced": 1}),
    ],
)
def test_searches_read_as_documents(text: str, document: dict[str, object]) -> None:
    assert containment(text, "args") == document


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "args search is empty"),
        ("user_id", "args search must be a JSON object or key=value pairs"),
        ("=5", "args search must be a JSON object or key=value pairs"),
        ("a..b=1", "args search must be a JSON object or key=value pairs"),
        ("[1, 2]", "args search must be a JSON object or key=value pairs"),
        ("{not json", "args search is not a valid JSON object"),
        ("a=1 a=2", "args search gives a twice"),
        ("a=1 a.b=2", "args search gives a twice"),
        ('{"a": "\\u0000"}', "args search must not contain the NUL character"),
        ("x" * 1001, "args search must be at most 1000 characters"),
    ],
)
def test_bad_searches_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        containment(text, "args")
    assert str(raised.value) == message
