"""Images: bounded decoding and a clean re-encode (no EXIF, GPS, XMP, ICC or comments).

The pixel count is checked from the header, before a pixel is decoded, so a small file
declaring 50,000 x 50,000 pixels costs a few kilobytes of memory, not gigabytes.
Colour profiles are dropped with the rest (they can carry text); images are re-encoded in
their own format and mode.

Animated GIF and WebP files keep every frame, with its duration, and their loop count.
Every frame is decoded and held until the animation is re-encoded, so the frames are
bounded before each is decoded: at most ``MAX_FRAMES`` of them, and all of them together
at most as many pixels as one still image may have (a 2,000-frame or a 500-frame
1000 x 1000 animation is a decompression bomb of its own). Other multi-frame files
(animated PNG, multi-picture JPEG) are refused.
"""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from PIL import Image, ImageOps, UnidentifiedImageError

from plexus.errors import PayloadTooLarge, PlexusError, UnsupportedMediaType

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

JPEG_QUALITY: Final = 90
#: Formats whose animations are kept, frame by frame.
ANIMATED_FORMATS: Final = frozenset({"GIF", "WEBP"})
#: Most frames an animation may have.
MAX_FRAMES: Final = 500
#: Modes each format is written in as they are; anything else is converted first.
_KEEP_MODES: Final[dict[str, frozenset[str]]] = {
    "JPEG": frozenset({"L", "RGB", "CMYK"}),
    "PNG": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}),
    "GIF": frozenset({"L", "P"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
}
_FALLBACK_MODE: Final = {"JPEG": "RGB", "PNG": "RGBA", "GIF": "P", "WEBP": "RGBA"}


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    width: int
    height: int


@contextmanager
def _bomb_guard() -> Iterator[None]:
    # Pillow's own bomb guard warns (then raises) past its global limit; both are refusals.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PayloadTooLarge("The image has too many pixels.") from None


def _open(path: Path, pil_format: str) -> Image.Image:
    with _bomb_guard():
        try:
            return Image.open(path, formats=[pil_format])
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise UnsupportedMediaType("The image cannot be read.") from None


def _check_size(image: Image.Image, max_pixels: int) -> int:
    """The pixels of the current frame; 415 when there are none, 413 past the limit."""
    width, height = image.size
    if width < 1 or height < 1:
        raise UnsupportedMediaType("The image has no pixels.")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image has {width} x {height} pixels; the limit is {max_pixels} pixels."
        )
    return width * height


def _check_header(image: Image.Image, pil_format: str, max_pixels: int) -> bool:
    """Whether the image is animated, from its header; refuses what cannot be accepted.

    ``is_animated`` looks for a second frame only: a GIF's frame count is known only once
    every frame was walked, which ``_animation`` does within its bounds.
    """
    pixels = _check_size(image, max_pixels)
    if not getattr(image, "is_animated", False):
        return False
    if pil_format not in ANIMATED_FORMATS:
        raise UnsupportedMediaType("Only GIF and WebP animations are accepted.")
    # WebP declares its frame count (and one canvas for every frame) up front.
    frames = int(getattr(image, "n_frames", 1)) if pil_format == "WEBP" else 1
    _check_frames(frames, frames * pixels, max_pixels)
    return True


def _check_frames(frames: int, pixels: int, max_pixels: int) -> None:
    if frames > MAX_FRAMES:
        raise PayloadTooLarge(f"The animation has more than {MAX_FRAMES} frames.")
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"The animation's frames have more than {max_pixels} pixels together."
        )


def clean_image(path: Path, pil_format: str, max_pixels: int) -> CleanImage:
    """Check, decode and re-encode the image at ``path`` in its own format (an animation
    frame by frame).

    Raises PayloadTooLarge (too many pixels or frames) or UnsupportedMediaType
    (unreadable, truncated, an animation of another format, or not the format its magic
    bytes claimed).
    """
    with _open(path, pil_format) as probe:
        animated = _check_header(probe, pil_format, max_pixels)
        try:
            probe.verify()
        except Exception:  # noqa: BLE001 - Pillow raises many kinds for a corrupt file
            raise UnsupportedMediaType("The image is corrupt.") from None
    # verify() leaves the image unusable: open it again to decode.
    with _open(path, pil_format) as source:
        _check_header(source, pil_format, max_pixels)
        if animated:
            return _encode_animation(_animation(source, max_pixels), pil_format)
        try:
            source.load()
            upright = ImageOps.exif_transpose(source)
        except Exception:  # noqa: BLE001 - a decoder failure is a refusal, whatever its kind
            raise UnsupportedMediaType("The image cannot be decoded.") from None
        return _encode(upright, pil_format)


@dataclass(frozen=True, slots=True)
class _Animation:
    frames: list[Image.Image]
    durations: list[int]  # milliseconds, one per frame
    loop: int | None  # None: play once (a GIF without a loop extension)


def _animation(source: Image.Image, max_pixels: int) -> _Animation:
    """Every frame of ``source``, decoded one by one once the frames so far, this one
    included, are within the frame and pixel limits (a frame may enlarge a GIF's canvas).
    """
    frames: list[Image.Image] = []
    durations: list[int] = []
    loop = source.info.get("loop")
    pixels = 0
    try:
        with _bomb_guard():
            while True:
                if frames:
                    try:
                        source.seek(len(frames))
                    except EOFError:
                        break
                pixels += _check_size(source, max_pixels)
                _check_frames(len(frames) + 1, pixels, max_pixels)
                source.load()
                durations.append(int(source.info.get("duration") or 0))
                frame = source.copy()
                ImageOps.exif_transpose(frame, in_place=True)
                frames.append(frame)
    except PlexusError:
        raise
    except Exception:  # noqa: BLE001 - a decoder failure is a refusal, whatever its kind
        raise UnsupportedMediaType("The animation cannot be decoded.") from None
    return _Animation(frames, durations, int(loop) if loop is not None else None)


def _encode(image: Image.Image, pil_format: str) -> CleanImage:
    transparency = image.info.get("transparency") if pil_format in {"GIF", "PNG"} else None
    # Whatever the decoder found (EXIF, XMP, ICC profile, comments, text chunks) stays
    # behind: Pillow writes some of them from ``info`` unless told otherwise.
    image.info = {}
    if image.mode not in _KEEP_MODES[pil_format]:
        image = image.convert(_FALLBACK_MODE[pil_format])
        transparency = None
    params: dict[str, object] = {}
    if transparency is not None and not isinstance(transparency, bytes):
        params["transparency"] = transparency
    if pil_format == "JPEG":
        params.update(quality=JPEG_QUALITY, optimize=True)
    elif pil_format == "WEBP":
        params.update(quality=JPEG_QUALITY)
    out = io.BytesIO()
    image.save(out, format=pil_format, **params)
    return CleanImage(out.getvalue(), image.width, image.height)


def _clean_frame(frame: Image.Image, pil_format: str) -> Image.Image:
    """The frame with nothing but its pixels (and, for a palette GIF, its transparency)."""
    transparency = frame.info.get("transparency") if frame.mode == "P" else None
    if pil_format == "WEBP" and frame.mode not in _KEEP_MODES["WEBP"]:
        frame = frame.convert("RGBA")
    frame.info = {}
    if isinstance(transparency, int):
        frame.info["transparency"] = transparency
    return frame


def _encode_animation(animation: _Animation, pil_format: str) -> CleanImage:
    # Whatever the decoder found stays behind, as for still images; the writer takes the
    # first frame's ``info`` for the file, so every frame's is emptied.
    frames = [_clean_frame(frame, pil_format) for frame in animation.frames]
    first = frames[0]
    params: dict[str, object] = {
        "save_all": True,
        "append_images": frames[1:],
        "duration": animation.durations,
    }
    if animation.loop is not None:
        params["loop"] = animation.loop
    if pil_format == "WEBP":
        params.update(quality=JPEG_QUALITY)
    out = io.BytesIO()
    try:
        first.save(out, format=pil_format, **params)
    except (OSError, ValueError):
        raise UnsupportedMediaType("The animation cannot be re-encoded.") from None
    return CleanImage(out.getvalue(), first.width, first.height)
