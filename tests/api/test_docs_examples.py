"""docs/api.md shows every route of /openapi.json with at least one curl example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from skiplock.api.openapi import DOCUMENT

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
HTTP_METHODS = ("get", "post", "put", "delete", "patch")


def shell_commands(text: str, program: str) -> list[list[str]]:
    """The words of every `$ program ...` console line, with its continuation lines (a
    trailing backslash, or a quoted argument that goes on)."""
    commands = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(f"$ {program} "):
            continue
        command, rest = line[2:], iter(lines[i + 1 :])
        while True:
            try:
                if not command.endswith("\\"):
                    commands.append(shlex.split(command, comments=True))
                    break
                command = command[:-1] + next(rest)
            except ValueError:  # an open quote: the argument goes on on the next line
                command += "\n" + next(rest)
    return commands


def curl_examples(text: str) -> list[tuple[str, str]]:
    """(METHOD, path) of every `$ curl ...` example."""
    examples = []
    for words in shell_commands(text, "curl"):
        if "|" in words:
            words = words[: words.index("|")]
        method = None
        url = None
        for i, word in enumerate(words):
            if word == "-X":
                method = words[i + 1]
            elif word in ("-d", "--data", "--data-binary", "--json") and method is None:
                method = "POST"
            elif "localhost:8000/" in word:
                url = word
        assert url is not None, f"no URL in the example: {' '.join(words)}"
        path = "/" + url.split("localhost:8000/", 1)[1].split("?")[0]
        examples.append((method or "GET", path))
    return examples


def route_pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_route_has_a_curl_example() -> None:
    examples = curl_examples(API_MD.read_text())
    missing = []
    for path, item in DOCUMENT["paths"].items():
        pattern = route_pattern(path)
        for method in item:
            if method not in HTTP_METHODS:
                continue
            if not any(m == method.upper() and pattern.match(p) for m, p in examples):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"docs/api.md has no curl example for: {', '.join(missing)}"


def test_examples_name_routes_that_exist() -> None:
    patterns = [
        (method.upper(), route_pattern(path))
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]
    unknown = [
        f"{m} {p}"
        for m, p in curl_examples(API_MD.read_text())
        if not any(m == method and pattern.match(p) for method, pattern in patterns)
    ]
    assert not unknown, f"docs/api.md shows routes that do not exist: {', '.join(unknown)}"
