"""`skiplock.image.resize` on real image files made by the tests, run by a real worker on
a real database: the four fits, the formats, the folders it may not leave, and the
inputs it refuses for good (too many bytes, a decompression bomb, no image)."""

from __future__ import annotations

import functools
import os
import random
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from skiplock import App
from skiplock.builtins.http import allowed_destinations
from skiplock.builtins.image import IMAGE_TASK, _fetch_source_url, _loaded, register
from skiplock.destinations import Destinations
from skiplock.errors import ConfigError, Discard
from skiplock.jobs import Job
from skiplock.testing import run_jobs
from skiplock.validation import InvalidArgs

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    application = App(dsn)
    yield application
    application.close()


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in", tmp_path / "out"


@pytest.fixture
def resizing(app: App, folders: tuple[Path, Path]) -> App:
    """`app` with the task registered on the `folders`, default limits."""
    register(app, {"input_dir": str(folders[0]), "output_dir": str(folders[1])})
    return app


def stripes(path: Path, size: tuple[int, int] = (400, 200), mode: str = "RGB") -> Path:
    """An image whose left quarter is red, middle half green, right quarter blue."""
    width, height = size
    image = Image.new(mode, size, GREEN)
    image.paste(RED, (0, 0, width // 4, height))
    image.paste(BLUE, (width * 3 // 4, 0, width, height))
    image.save(path)
    return path


def noise(path: Path, size: tuple[int, int] = (100, 100)) -> Path:
    """An image of random pixels (it compresses badly, so its size in bytes is large)."""
    rng = random.Random(7)
    Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)).save(path)
    return path


def run(app: App, args: dict[str, Any]) -> Job:
    job_id = app.enqueue(IMAGE_TASK, args, max_attempts=5)
    run_jobs(app)
    return app.get_job(job_id)


def failed_with(job: Job, text: str) -> bool:
    """Dead-lettered at the first attempt, with `text` in its error."""
    assert (job.status, job.attempt) == ("failed", 1), job.last_error
    assert job.last_error is not None
    assert text in job.last_error["error"], job.last_error["error"]
    return True


def pixel(path: Path, xy: tuple[int, int]) -> Any:
    with Image.open(path) as image:
        return image.convert("RGBA").getpixel(xy)


# ---- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({}, "image.output_dir is required"),
        ({"output_dir": "/no/such/folder"}, "image.output_dir must be an existing folder"),
        ({"output_dir": 3}, "image.output_dir must be a folder's path"),
        ({"output_dir": "OUT", "input_dir": "/no/such"}, "image.input_dir must be"),
        ({"output_dir": "OUT", "max_pixels": 0}, "image.max_pixels must be an integer >= 1"),
        ({"output_dir": "OUT", "max_bytes": "1MB"}, "image.max_bytes must be an integer"),
        ({"output_dir": "OUT", "quality": 80}, "image.quality is not a setting"),
    ],
)
def test_a_wrong_setting_is_refused_naming_its_key(
    tmp_path: Path, section: dict[str, Any], named: str
) -> None:
    if section.get("output_dir") == "OUT":
        section["output_dir"] = str(tmp_path)
    app = App("postgresql:///unused")
    with pytest.raises(ConfigError, match=named):
        register(app, section)
    assert IMAGE_TASK not in app.tasks


# ---- fits ------------------------------------------------------------------------------


def test_inside_keeps_the_aspect_ratio_within_the_box(
    resizing: App, folders: tuple[Path, Path]
) -> None:
    stripes(folders[0] / "wide.png")
    job = run(
        resizing,
        {"source": "wide.png", "output": "thumbs/wide.png", "width": 100, "height": 100},
    )
    assert job.status == "succeeded", job.last_error
    out = folders[1] / "thumbs" / "wide.png"
    assert job.result == {
        "output": str(out.resolve()),
        "width": 100,
        "height": 50,
        "bytes": out.stat().st_size,
        "format": "png",
    }
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (100, 50))


def test_cover_fills_the_box_and_crops_the_sides(resizing: App, folders: tuple[Path, Path]) -> None:
    stripes(folders[0] / "wide.png")
    job = run(
        resizing,
        {"source": "wide.png", "output": "c.png", "width": 100, "height": 100, "fit": "cover"},
    )
    assert (job.result["width"], job.result["height"]) == (100, 100)
    out = folders[1] / "c.png"
    # the middle half of the source is what remains: green from edge to edge
    assert pixel(out, (1, 50))[:3] == GREEN and pixel(out, (98, 50))[:3] == GREEN


def test_contain_pads_the_box_transparent_or_white(
    resizing: App, folders: tuple[Path, Path]
) -> None:
    stripes(folders[0] / "wide.png")
    box = {"source": "wide.png", "width": 100, "height": 100, "fit": "contain"}
    run(resizing, {**box, "output": "p.png"})
    run(resizing, {**box, "output": "p.jpg", "quality": 95})
    assert pixel(folders[1] / "p.png", (50, 2)) == (0, 0, 0, 0)
    assert pixel(folders[1] / "p.png", (50, 50))[:3] == GREEN
    assert all(channel > 245 for channel in pixel(folders[1] / "p.jpg", (50, 2))[:3])
    with Image.open(folders[1] / "p.jpg") as image:
        assert image.size == (100, 100)


def test_fill_stretches_to_the_box(resizing: App, folders: tuple[Path, Path]) -> None:
    stripes(folders[0] / "wide.png")
    job = run(
        resizing,
        {"source": "wide.png", "output": "f.png", "width": 80, "height": 120, "fit": "fill"},
    )
    assert (job.result["width"], job.result["height"]) == (80, 120)
    out = folders[1] / "f.png"
    assert pixel(out, (1, 60))[:3] == RED and pixel(out, (78, 60))[:3] == BLUE


@pytest.mark.parametrize(
    ("side", "size"), [({"width": 100}, (100, 50)), ({"height": 100}, (200, 100))]
)
def test_one_side_given_the_other_follows_the_aspect_ratio(
    resizing: App, folders: tuple[Path, Path], side: dict[str, int], size: tuple[int, int]
) -> None:
    stripes(folders[0] / "wide.png")
    job = run(resizing, {"source": "wide.png", "output": "o.png", "fit": "cover", **side})
    assert (job.result["width"], job.result["height"]) == size


def test_the_exif_orientation_is_applied(resizing: App, folders: tuple[Path, Path]) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn: portrait
    Image.new("RGB", (200, 100), RED).save(folders[0] / "photo.jpg", exif=exif)
    job = run(resizing, {"source": "photo.jpg", "output": "photo.jpg", "width": 100, "height": 100})
    assert (job.result["width"], job.result["height"]) == (50, 100)


@pytest.mark.parametrize(
    ("orientation", "box", "decoded"),
    [
        (1, (400, 300), (1000, 750)),  # 1/4: 1/8 would be 500 x 375, less than twice the box
        (1, (400, None), (1000, 750)),
        (1, (None, 2000), (4000, 3000)),  # no smaller scale has twice the pixels
        (6, (300, 400), (750, 1000)),  # stored 4000 x 3000, shown 3000 x 4000
    ],
)
def test_a_big_jpeg_is_decoded_at_a_reduced_scale(
    tmp_path: Path,
    orientation: int,
    box: tuple[int | None, int | None],
    decoded: tuple[int, int],
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (4000, 3000), RED).save(tmp_path / "big.jpg", exif=exif)
    with Image.open(tmp_path / "big.jpg") as image:
        assert _loaded(image, *box).size == decoded


# ---- formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "pillow_format"),
    [
        ({"output": "a.jpg"}, "JPEG"),
        ({"output": "a.JPEG"}, "JPEG"),
        ({"output": "a.webp"}, "WEBP"),
        ({"output": "a.png"}, "PNG"),
        ({"output": "a.out", "format": "webp"}, "WEBP"),
        ({"output": "a.jpg", "format": "jpeg"}, "JPEG"),
    ],
)
def test_the_format_comes_from_the_args_or_the_suffix(
    resizing: App, folders: tuple[Path, Path], args: dict[str, Any], pillow_format: str
) -> None:
    stripes(folders[0] / "alpha.png", mode="RGBA")
    job = run(resizing, {"source": "alpha.png", "width": 50, **args})
    assert job.status == "succeeded", job.last_error
    assert job.result["format"] == pillow_format.lower()
    with Image.open(folders[1] / args["output"]) as image:
        assert image.format == pillow_format
        if pillow_format == "JPEG":
            assert image.mode == "RGB"  # the alpha channel flattened, as JPEG has none


def test_a_lower_quality_makes_a_smaller_file(resizing: App, folders: tuple[Path, Path]) -> None:
    noise(folders[0] / "noise.png", (200, 200))
    low, high = (
        run(resizing, {"source": "noise.png", "output": f"{q}.webp", "width": 200, "quality": q})
        for q in (10, 95)
    )
    assert low.result["bytes"] < high.result["bytes"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"output": "a.out"}, "give format"),
        ({"output": "a.jpg", "format": "png"}, "format png does not match the output's suffix"),
    ],
)
def test_an_unknown_or_contradicting_format_is_dead_lettered(
    resizing: App, folders: tuple[Path, Path], args: dict[str, Any], error: str
) -> None:
    stripes(folders[0] / "wide.png")
    assert failed_with(run(resizing, {"source": "wide.png", "width": 10, **args}), error)


def test_a_rerun_replaces_the_output_whole(resizing: App, folders: tuple[Path, Path]) -> None:
    stripes(folders[0] / "wide.png")
    job = run(resizing, {"source": "wide.png", "output": "r.png", "width": 100})
    first = (folders[1] / "r.png").read_bytes()
    resizing.retry_job(job.id)
    run_jobs(resizing)
    assert resizing.get_job(job.id).status == "succeeded"
    assert (folders[1] / "r.png").read_bytes() == first
    assert sorted(p.name for p in folders[1].iterdir()) == ["r.png"]  # no temporary left


# ---- folders ---------------------------------------------------------------------------


def test_paths_cannot_leave_their_folders(resizing: App, folders: tuple[Path, Path]) -> None:
    inside, outside = folders[0], folders[0].parent
    stripes(outside / "secret.png")
    stripes(inside / "ok.png")
    os.symlink(outside / "secret.png", inside / "link.png")
    for source in ("../secret.png", str(outside / "secret.png"), "link.png", "."):
        job = run(resizing, {"source": source, "output": "x.png", "width": 10})
        assert failed_with(job, "source must be a path inside image.input_dir")
    for output in ("../x.png", "/tmp/x.png", "sub/../../x.png", "."):
        job = run(resizing, {"source": "ok.png", "output": output, "width": 10})
        assert failed_with(job, "output must be a path inside image.output_dir")
    assert list(folders[1].iterdir()) == [] and not (outside / "x.png").exists()


def test_a_source_that_is_no_file_is_dead_lettered(
    resizing: App, folders: tuple[Path, Path]
) -> None:
    (folders[0] / "folder").mkdir()
    os.mkfifo(folders[0] / "pipe.png")  # opening it would wait for a writer forever
    for source in ("nothing.png", "folder", "pipe.png"):
        job = run(resizing, {"source": source, "output": "x.png", "width": 10})
        assert failed_with(job, f"source {source!r} is not a file in image.input_dir")


def test_without_an_input_folder_only_urls_are_sources(
    app: App, folders: tuple[Path, Path]
) -> None:
    register(app, {"output_dir": str(folders[1])})
    job = run(app, {"source": "a.png", "output": "x.png", "width": 10})
    assert failed_with(job, "source needs image.input_dir")


# ---- refused inputs --------------------------------------------------------------------


def test_a_decompression_bomb_is_dead_lettered(app: App, folders: tuple[Path, Path]) -> None:
    register(
        app, {"input_dir": str(folders[0]), "output_dir": str(folders[1]), "max_pixels": 1_000_000}
    )
    # 9 megapixels in a few kilobytes: past twice the limit, Pillow refuses it itself
    Image.new("1", (3000, 3000)).save(folders[0] / "bomb.png")
    assert (folders[0] / "bomb.png").stat().st_size < 10_000
    # between the limit and twice it Pillow only warns; the task makes that an error too
    Image.new("1", (1200, 1000)).save(folders[0] / "big.png")
    for name in ("bomb.png", "big.png"):
        job = run(app, {"source": name, "output": "x.png", "width": 10})
        assert failed_with(job, "decompression bomb")
    assert list(folders[1].iterdir()) == []


def test_an_oversized_file_is_dead_lettered(app: App, folders: tuple[Path, Path]) -> None:
    register(
        app, {"input_dir": str(folders[0]), "output_dir": str(folders[1]), "max_bytes": 10_000}
    )
    size = noise(folders[0] / "noise.png").stat().st_size
    assert size > 10_000
    job = run(app, {"source": "noise.png", "output": "x.png", "width": 10})
    assert failed_with(job, f"the source has {size} bytes, more than image.max_bytes (10000)")


def test_a_file_that_is_no_image_or_broken_is_dead_lettered(
    resizing: App, folders: tuple[Path, Path]
) -> None:
    (folders[0] / "notes.png").write_text("not an image")
    job = run(resizing, {"source": "notes.png", "output": "x.png", "width": 10})
    assert failed_with(job, "not an image Pillow can read")
    whole = noise(folders[0] / "whole.png").read_bytes()
    (folders[0] / "cut.png").write_bytes(whole[: len(whole) // 2])
    job = run(resizing, {"source": "cut.png", "output": "x.png", "width": 10})
    assert failed_with(job, "the source image is broken")


@pytest.mark.parametrize(
    "args",
    [
        {"output": "x.png", "width": 10},  # no source
        {"source": "a.png", "url": "https://example.com/a.png", "output": "x.png", "width": 10},
        {"source": "a.png", "width": 10},  # no output
        {"source": "a.png", "output": "x.png"},  # no size
        {"source": "a.png", "output": "x.png", "width": 0},
        {"source": "a.png", "output": "x.png", "width": 100_000},
        {"source": "a.png", "output": "x.png", "width": 10, "fit": "stretch"},
        {"source": "a.png", "output": "x.png", "width": 10, "format": "gif"},
        {"source": "a.png", "output": "x.png", "width": 10, "quality": 101},
        {"url": "file:///etc/passwd", "output": "x.png", "width": 10},
        {"url": "ftp://example.com/a.png", "output": "x.png", "width": 10},
    ],
)
def test_bad_args_are_refused_at_enqueue(resizing: App, args: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgs, match=r"args"):
        resizing.enqueue(IMAGE_TASK, args)


# ---- source URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x", "http://"]
)
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(Discard, match="url must be an http or https URL"):
        _fetch_source_url(url, 1000, Destinations())


def test_a_url_on_loopback_is_dead_lettered(resizing: App) -> None:
    """Source URLs pass the destination guard, as skiplock.http's do: loopback is refused
    unless the [http] allow-list names it."""
    for url in ("http://127.0.0.1:9/a.png", "http://localhost/a.png", "http://[::1]/a.png"):
        job = run(resizing, {"url": url, "output": "x.png", "width": 10})
        assert failed_with(job, "loopback")


@pytest.fixture
def image_server(folders: tuple[Path, Path]) -> Iterator[str]:
    """A local HTTP server of the input folder; its root URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folders[0]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_url_the_allow_list_lets_through_is_fetched_and_resized(
    resizing: App, folders: tuple[Path, Path], image_server: str
) -> None:
    stripes(folders[0] / "served.png")
    resizing.destinations = allowed_destinations({"allow": ["127.0.0.1/32"]})
    job = run(resizing, {"url": f"{image_server}/served.png", "output": "small.png", "width": 100})
    assert job.status == "succeeded", job.last_error
    assert job.result is not None and (job.result["width"], job.result["height"]) == (100, 50)
    assert pixel(folders[1] / "small.png", (5, 25))[:3] == RED
    # an answer that is not a success is refused for good; one over max_bytes too
    missing = run(resizing, {"url": f"{image_server}/nope.png", "output": "n.png", "width": 9})
    assert failed_with(missing, "404")
    small = Destinations.parse(["127.0.0.1/32"], what="http.allow")
    with pytest.raises(Discard, match=r"more than image\.max_bytes"):
        _fetch_source_url(f"{image_server}/served.png", 100, small)
