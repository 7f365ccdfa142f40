"""docs/api.md shows every route of /openapi.json with at least one curl example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from api_checks import DOCUMENT

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


def route_pattern(path: str, item: dict[str, Any]) -> re.Pattern[str]:
    """A regex for the paths `path` answers: a path parameter matches what its schema's
    pattern allows (task names may hold '/'), else one segment."""
    patterns = {}
    for operation in item.values():
        for parameter in operation.get("parameters", []):
            pattern = parameter.get("schema", {}).get("pattern")
            if parameter["in"] == "path" and pattern:
                patterns[parameter["name"]] = pattern.removeprefix("^").removesuffix("$")
    regex = re.sub(
        r"\\\{(\w+)\\\}",
        lambda m: f"(?:{patterns.get(m.group(1), '[^/]+')})",
        re.escape(path),
    )
    return re.compile(f"^{regex}$")


def test_every_route_has_a_curl_example() -> None:
    examples = curl_examples(API_MD.read_text())
    missing = []
    for path, item in DOCUMENT["paths"].items():
        pattern = route_pattern(path, item)
        for method in item:
            if method not in HTTP_METHODS:
                continue
            if not any(m == method.upper() and pattern.match(p) for m, p in examples):
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"docs/api.md has no curl example for: {', '.join(missing)}"


def test_examples_name_routes_that_exist() -> None:
    patterns = [
        (method.upper(), route_pattern(path, item))
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
