"""deploy/Dockerfile, read rather than built (no container engine in the test run): two
stages, a non-root user, `skiplock` as the entrypoint with real commands, pinned base
images, every COPY source present and inside the build context, and the HEALTHCHECK
script answering for a real API and a real worker."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser

from conftest import wait_until
from skiplock.cli import main
from skiplock.version import __version__

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
sys.path.insert(0, str(ROOT / "deploy"))
import healthcheck  # noqa: E402  (deploy/healthcheck.py, the image's HEALTHCHECK)


def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def stages() -> list[list[dict[str, Any]]]:
    """The instructions of each stage (FROM first), comments dropped."""
    found: list[list[dict[str, Any]]] = []
    for item in parsed().structure:
        if item["instruction"] == "FROM":
            found.append([])
        if found and item["instruction"] != "COMMENT":
            found[-1].append(item)
    return found


def only(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the context: the last matching pattern
    wins, `!` re-includes, a pattern naming a folder covers what is in it."""
    verdict = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").replace("**", "*")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            verdict = not negate
    return verdict


def test_two_stages_build_a_wheel_and_install_it() -> None:
    build, runtime = stages()
    assert parsed().is_multistage
    assert build[0]["value"].endswith(" AS build")
    assert any("pip wheel" in run for run in only(build, "RUN"))
    copied = only(runtime, "COPY")
    assert any(c.startswith("--from=build /dist/") for c in copied)
    assert any("pip install /tmp/dist/*.whl" in run for run in only(runtime, "RUN"))
    # the runtime gets the wheel and the health check, never the source tree
    assert all(c.startswith("--from=build") or c.startswith("deploy/") for c in copied)


def test_base_images_are_pinned_slim_and_never_latest() -> None:
    for image in parsed().parent_images:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and "latest" not in image, image
        assert name == "python" and "slim" in tag, image


def test_the_runtime_runs_as_an_unprivileged_user() -> None:
    runtime = stages()[-1]
    (user,) = only(runtime, "USER")
    uid = user.split(":")[0]
    assert uid not in ("root", "0")
    assert int(uid) >= 10000  # outside the range a host's own users take
    # the user is made in the image, with that uid
    assert any(f"--uid {uid}" in run for run in only(runtime, "RUN"))
    # and it is the last word: nothing after USER runs as root
    names = [i["instruction"] for i in runtime]
    assert "RUN" not in names[names.index("USER") :]


def test_entrypoint_is_skiplock_and_its_commands_are_real() -> None:
    runtime = stages()[-1]
    (entrypoint,) = only(runtime, "ENTRYPOINT")
    (cmd,) = only(runtime, "CMD")
    assert json.loads(entrypoint) == ["skiplock"]
    default = json.loads(cmd)
    assert default == ["serve"]
    # the commands the file's own comment shows, and the default one
    shown = [
        shlex.split(line.split("skiplock:0.1.0", 1)[1].split("(")[0])
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("#   docker run")
    ]
    assert ["migrate"] in shown and ["worker", "--app", "myapp.tasks:app"] in shown
    for args in [default, *shown]:
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
    # serve listens on every interface, on the port it EXPOSEs
    env = " ".join(only(runtime, "ENV"))
    assert "SKIPLOCK_HOST=0.0.0.0" in env and "SKIPLOCK_PORT=8000" in env
    assert only(runtime, "EXPOSE") == ["8000"]


def test_labels_name_the_image_and_its_version() -> None:
    labels = parsed().labels
    assert labels["org.opencontainers.image.title"] == "skiplock"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    # the ARG's default, kept equal to the package's version
    assert f"VERSION={__version__}" in only(stages()[-1], "ARG")


def test_every_copied_file_exists_and_is_in_the_context() -> None:
    for stage in stages():
        for value in only(stage, "COPY"):
            *sources, _destination = shlex.split(value)
            for source in sources:
                if source.startswith("--"):
                    break  # --from=...: from another stage
                assert (ROOT / source).exists(), source
                assert not ignored(source), f"{source} is left out by .dockerignore"


def test_the_build_stage_holds_what_the_wheel_is_built_from() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    hatch = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {
        "pyproject.toml",
        project["project"]["readme"],
        *project["project"]["license-files"],
        *(p.split("/")[0] for p in hatch["packages"]),
        *hatch["force-include"],
    }
    copied = set()
    for value in only(stages()[0], "COPY"):
        copied.update(shlex.split(value)[:-1])
    assert needed <= copied
    # and the context leaves the rest out
    for path in ("tests/conftest.py", ".git/HEAD", ".venv/bin/python", "docs/api.md"):
        assert ignored(path), path


def test_the_healthcheck_runs_the_script_the_image_copies() -> None:
    runtime = stages()[-1]
    (check,) = only(runtime, "HEALTHCHECK")
    command = json.loads(check.split("CMD", 1)[1])
    assert any(
        c.split()[0] == "deploy/healthcheck.py" and c.split()[1] == command[1]
        for c in only(runtime, "COPY")
    )
    assert "--interval=" in check and "--start-period=" in check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_the_healthcheck_answers_for_a_real_api_and_worker(
    dsn: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    port = str(_free_port())
    serve = ["skiplock", "serve", "--no-auth", "--port", port]
    assert not healthcheck.healthy(serve)  # nothing listens yet
    with (tmp_path / "serve.log").open("wb") as log:
        processes.append(
            subprocess.Popen([sys.executable, "-m", *serve], stdout=log, stderr=log, env=env)
        )
    wait_until(lambda: healthcheck.healthy(serve), 30)

    # the script asks `skiplock workers`, on the image's DSN and PATH
    monkeypatch.setenv("SKIPLOCK_DSN", dsn)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    worker = ["skiplock", "worker", "--app", "skiplock.demo:app"]
    assert not healthcheck.healthy(worker)  # no worker registered from this host
    with (tmp_path / "worker.log").open("wb") as log:
        processes.append(
            subprocess.Popen([sys.executable, "-m", *worker], stdout=log, stderr=log, env=env)
        )
    wait_until(lambda: healthcheck.healthy(worker), 30)
    assert healthcheck.option(["serve", "--port=9000"], "--port", "8000") == "9000"
