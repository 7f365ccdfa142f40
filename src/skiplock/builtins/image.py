"""The built-in task `skiplock.image.resize`: one image, resized and re-encoded with Pillow.

The source is a file under the configured input folder or an http(s) URL; the output is
a file under the configured output folder. Paths are resolved (symlinks too) and must
stay inside their folder. An image that is too large (bytes, or pixels: a decompression
bomb), unreadable, or missing goes to the dead letters at once, as running it again
cannot change it; a URL that cannot be reached now, or a full disk, is retried.

The output is written to a temporary file beside it and renamed into place, so a rerun
(at least once, like every job) replaces it whole and a reader never sees half a file.
See docs/builtins.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from skiplock.builtins import check_keys
from skiplock.context import JobContext
from skiplock.destinations import DestinationRefused, Destinations
from skiplock.errors import ConfigError, Discard

if TYPE_CHECKING:
    from PIL.Image import Image as PillowImage

    from skiplock.app import App

IMAGE_TASK = "skiplock.image.resize"
# Served only when its settings table is given: it has no default for the output folder
# (image.output_dir).
NEEDS_SETTINGS = True
FITS = ("inside", "contain", "cover", "fill")
FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}  # ours -> Pillow's name
SUFFIXES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}
SETTING_KEYS = frozenset({"input_dir", "output_dir", "max_pixels", "max_bytes"})
DEFAULT_MAX_PIXELS = 50_000_000  # about 7000 x 7000; ~200 MB decoded as RGBA
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_SIDE = 16384
DEFAULT_QUALITY = 85
FETCH_TIMEOUT = 30.0  # seconds for a source URL; a slow server fails the attempt

ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "minLength": 1, "maxLength": 1024},
        "url": {"type": "string", "maxLength": 2048, "pattern": "^https?://[^\\s]+$"},
        "output": {"type": "string", "minLength": 1, "maxLength": 1024},
        "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
        "fit": {"enum": list(FITS)},
        "format": {"enum": list(FORMATS)},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    "required": ["output"],
    "additionalProperties": False,
    "oneOf": [{"required": ["source"]}, {"required": ["url"]}],
    "anyOf": [{"required": ["width"]}, {"required": ["height"]}],
}


@dataclass(frozen=True)
class ImageSettings:
    """The `[image]` section, checked: where images come from and go, and how big."""

    output_dir: Path
    input_dir: Path | None = None  # None: only URLs are sources
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ImageSettings:
        """The settings of an `[image]` table; ConfigError naming the key that is wrong."""
        check_keys(section, SETTING_KEYS, "image")
        output_dir = _folder(section, "output_dir")
        if output_dir is None:
            raise ConfigError("image.output_dir is required: the folder resized images go to")
        return cls(
            output_dir=output_dir,
            input_dir=_folder(section, "input_dir"),
            max_pixels=_positive(section, "max_pixels", DEFAULT_MAX_PIXELS),
            max_bytes=_positive(section, "max_bytes", DEFAULT_MAX_BYTES),
        )


def register(app: App, section: Mapping[str, Any]) -> None:
    """Check the `[image]` settings and register `skiplock.image.resize` on `app`;
    ConfigError naming the key when a setting is wrong, or when Pillow is missing.

    Sets Pillow's process-wide decompression-bomb limit to `max_pixels` and makes its
    DecompressionBombWarning an error in this process."""
    settings = ImageSettings.from_section(section)
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError(
            "the [image] settings need Pillow: pip install 'skiplock[images]'"
        ) from None
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    # Between max_pixels and twice that, Pillow only warns and decodes anyway.
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    app.task(
        name=IMAGE_TASK,
        args_schema=ARGS_SCHEMA,
        description="Resize an image file or URL into the output folder (jpeg, png, webp).",
    )(Resizer(settings, lambda: app.destinations).resize)


class SourceUnavailable(Exception):
    """The source URL could not be fetched now (5xx, unreachable): the attempt is retried."""


class Resizer:
    """Reads, resizes and writes the image of one `skiplock.image.resize` job."""

    def __init__(self, settings: ImageSettings, destinations: Callable[[], Destinations]) -> None:
        self.settings = settings
        # the app's destination guard, as the [http] settings left it
        self.destinations = destinations

    def resize(
        self,
        ctx: JobContext,
        output: str,
        source: str | None = None,
        url: str | None = None,
        width: int | None = None,
        height: int | None = None,
        fit: str = "inside",
        format: str | None = None,
        quality: int = DEFAULT_QUALITY,
    ) -> dict[str, Any]:
        """The handler: the output's path, size in pixels and bytes, and format. Can run
        twice for one job; the second run replaces the output with the same image."""
        target = self.output_path(output)
        kind = output_format(target, format)
        with self.open_source(source, url) as data, _readable_image(data) as image:
            if image.width * image.height > self.settings.max_pixels:
                raise Discard(
                    f"the source has {image.width} x {image.height} pixels, more than"
                    f" image.max_pixels ({self.settings.max_pixels})"
                )
            resized = fitted(_loaded(image, width, height), width, height, fit, kind)
        if resized.width * resized.height > self.settings.max_pixels:
            raise Discard(f"the output would have more than {self.settings.max_pixels} pixels")
        written = _write(resized, target, kind, quality)
        return {
            "output": str(target),
            "width": resized.width,
            "height": resized.height,
            "bytes": written,
            "format": kind,
        }

    def output_path(self, output: str) -> Path:
        return _inside(self.settings.output_dir, output, "output", "image.output_dir")

    @contextlib.contextmanager
    def open_source(self, source: str | None, url: str | None) -> Any:
        """The source's bytes as a binary file; Discard if too big or not there."""
        limit = self.settings.max_bytes
        if url is not None:
            yield io.BytesIO(_fetch_source_url(url, limit, self.destinations()))
            return
        if source is None:
            raise Discard("give source (a file under image.input_dir) or url")
        if self.settings.input_dir is None:
            raise Discard("source needs image.input_dir to be set (only urls are accepted)")
        path = _inside(self.settings.input_dir, source, "source", "image.input_dir")
        try:
            # a regular file only: opening a FIFO would block the worker's thread
            file = path.open("rb") if path.is_file() else None
        except (FileNotFoundError, NotADirectoryError):
            file = None
        if file is None:
            raise Discard(f"source {source!r} is not a file in image.input_dir")
        with file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise Discard(f"the source has {size} bytes, more than image.max_bytes ({limit})")
            yield file


def output_format(target: Path, given: str | None) -> str:
    """jpeg, png or webp: `given`, else the output's suffix; Discard if neither says or
    they disagree (a .jpg holding PNG bytes misleads whoever opens it)."""
    by_suffix = SUFFIXES.get(target.suffix.lower())
    if given is not None and by_suffix is not None and given != by_suffix:
        raise Discard(f"format {given} does not match the output's suffix {target.suffix}")
    kind = given or by_suffix
    if kind is None:
        raise Discard(
            f"give format ({', '.join(FORMATS)}) or an output ending in {', '.join(SUFFIXES)}"
        )
    return kind


def fitted(
    image: PillowImage, width: int | None, height: int | None, fit: str, kind: str
) -> PillowImage:
    """`image` resized to width x height by `fit` (the names of sharp and CSS object-fit):
    inside keeps the aspect ratio within the box; contain does too and pads to the box;
    cover fills the box and crops the overflow; fill stretches to the box. With one side
    given the other follows the aspect ratio, and every fit gives the same image."""
    from PIL import Image, ImageOps

    ratio = image.width / image.height
    if height is None:
        assert width is not None  # the args schema asks for one of them
        height, fit = max(1, round(width / ratio)), "fill"
    elif width is None:
        width, fit = max(1, round(height * ratio)), "fill"
    image = _in_mode_for(image, kind)
    box = (width, height)
    resample = Image.Resampling.LANCZOS
    if fit == "fill":
        return image.resize(box, resample)
    if fit == "cover":
        return ImageOps.fit(image, box, resample)
    if fit == "contain":
        # pad white where JPEG has no transparency, transparent elsewhere
        if kind == "jpeg":
            return ImageOps.pad(image, box, resample, color=(255, 255, 255))
        return ImageOps.pad(image.convert("RGBA"), box, resample, color=(0, 0, 0, 0))
    return ImageOps.contain(image, box, resample)


def _in_mode_for(image: PillowImage, kind: str) -> PillowImage:
    """`image` in a mode `kind` can store: JPEG has no alpha (flattened on white)."""
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if kind == "jpeg":
        if not has_alpha:
            return image.convert("RGB")
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGBA" if has_alpha else "RGB")


def _write(image: PillowImage, target: Path, kind: str, quality: int) -> int:
    """Save `image` to `target` through a temporary file renamed into place; its bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"optimize": True}
    if kind in ("jpeg", "webp"):
        options["quality"] = quality
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            image.save(file, format=FORMATS[kind], **options)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target.stat().st_size


@contextlib.contextmanager
def _readable_image(data: IO[bytes]) -> Any:
    """Pillow's image of `data` (its header read, its pixels not yet); Discard when it is
    no image Pillow reads or a decompression bomb."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Discard(f"refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Discard(f"the source is not an image Pillow can read: {exc}") from None
    with image:
        yield image


def _loaded(image: PillowImage, width: int | None, height: int | None) -> PillowImage:
    """`image` decoded and turned upright by its EXIF orientation; Discard when its
    data is broken (truncated, corrupt).

    A JPEG is decoded at the smallest scale of 1/2, 1/4 or 1/8 that still has twice the
    pixels of the width x height box in each direction, as Pillow's thumbnail() does:
    the decoder then skips most of the work and memory, and the resize after it has
    the detail it needs (docs/performance.md)."""
    from PIL import Image, ImageOps

    try:
        if image.format == "JPEG":
            image.draft(None, _decoding_box(image, width, height))
        image.load()
        return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Discard(f"refused as a decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise Discard(f"the source image is broken: {exc}") from None


def _decoding_box(image: PillowImage, width: int | None, height: int | None) -> tuple[int, int]:
    """Twice the output's box, in the orientation the pixels are stored in."""
    turned = image.getexif().get(0x0112) in (5, 6, 7, 8)  # shown a quarter turn round
    shown_width, shown_height = (image.height, image.width) if turned else image.size
    if width is None:
        assert height is not None  # the args schema asks for one of them
        width = max(1, round(height * shown_width / shown_height))
    if height is None:
        height = max(1, round(width * shown_height / shown_width))
    stored = (height, width) if turned else (width, height)
    return (2 * stored[0], 2 * stored[1])


def _inside(folder: Path, given: str, field: str, setting: str) -> Path:
    """`given` resolved under `folder` (symlinks followed); Discard naming `field` when
    it leads anywhere else."""
    root = folder.resolve()
    if "\x00" in given:
        raise Discard(f"{field} must be a path inside {setting}, got {given!r}")
    path = (root / given).resolve()
    if path == root or not path.is_relative_to(root):
        raise Discard(f"{field} must be a path inside {setting}, got {given!r}")
    return path


def _fetch_source_url(url: str, max_bytes: int, destinations: Destinations) -> bytes:
    """The body of `url` (http or https; no redirects), at most `max_bytes`, fetched
    through the destination guard (skiplock.destinations: no loopback, private or
    metadata address unless the [http] allow-list says so). Discard when the URL or its
    answer is refused for good (another scheme, a refused destination, a 4xx, too big);
    SourceUnavailable (retried) when it cannot be fetched now."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise Discard(f"url must be an http or https URL, got {url!r}")
    headers = {"User-Agent": "skiplock-image", "Accept-Encoding": "identity"}
    try:
        with (
            destinations.client(timeout=FETCH_TIMEOUT) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            answer = f"url {url!r} answered {response.status_code} {response.reason_phrase}"
            if response.status_code >= 300:
                status = response.status_code
                if status < 500 and status not in (408, 429):
                    raise Discard(answer)
                raise SourceUnavailable(answer)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise Discard(f"url {url!r} has {length} bytes, more than image.max_bytes")
            body = b""
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > max_bytes:
                    raise Discard(f"url {url!r} has more than image.max_bytes ({max_bytes}) bytes")
    except DestinationRefused as exc:
        raise Discard(f"url {url!r}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise Discard(f"url must be an http or https URL, got {url!r}: {exc}") from None
    except httpx.TransportError as exc:
        raise SourceUnavailable(f"url {url!r} could not be fetched: {exc}") from None
    return body


def _folder(section: Mapping[str, Any], key: str) -> Path | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"image.{key} must be a folder's path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"image.{key} must be an existing folder, got {value!r}")
    return path


def _positive(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"image.{key} must be an integer >= 1, got {value!r}")
    return value
