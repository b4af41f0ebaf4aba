"""Images: bounded decoding and a clean re-encode (no EXIF, GPS, XMP, ICC or comments).

The pixel count is checked from the header, before a pixel is decoded, so a small file
declaring 50,000 x 50,000 pixels costs a few kilobytes of memory, not gigabytes.
Animated GIF and WebP files are refused: re-encoding every frame would multiply the
decoding cost by the frame count, and storing the animation as uploaded would keep its
metadata. Colour profiles are dropped with the rest (they can carry text); images are
re-encoded in their own format and mode.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from PIL import Image, ImageOps, UnidentifiedImageError

from plexus.errors import PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:
    from pathlib import Path

JPEG_QUALITY: Final = 90
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


def _open(path: Path, pil_format: str) -> Image.Image:
    # Pillow's own bomb guard warns (then raises) past its global limit; both are refusals.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path, formats=[pil_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise PayloadTooLarge("The image has too many pixels.") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise UnsupportedMediaType("The image cannot be read.") from None


def _check_header(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise UnsupportedMediaType("The image has no pixels.")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image has {width} x {height} pixels; the limit is {max_pixels} pixels."
        )
    if getattr(image, "n_frames", 1) != 1:
        raise UnsupportedMediaType("Animated images are not accepted.")


def clean_image(path: Path, pil_format: str, max_pixels: int) -> CleanImage:
    """Check, decode and re-encode the image at ``path`` in its own format.

    Raises PayloadTooLarge (too many pixels) or UnsupportedMediaType (unreadable,
    truncated, animated or not the format its magic bytes claimed).
    """
    with _open(path, pil_format) as probe:
        _check_header(probe, max_pixels)
        try:
            probe.verify()
        except Exception:  # noqa: BLE001 - Pillow raises many kinds for a corrupt file
            raise UnsupportedMediaType("The image is corrupt.") from None
    # verify() leaves the image unusable: open it again to decode.
    with _open(path, pil_format) as source:
        _check_header(source, max_pixels)
        try:
            source.load()
            upright = ImageOps.exif_transpose(source)
        except Exception:  # noqa: BLE001 - a decoder failure is a refusal, whatever its kind
            raise UnsupportedMediaType("The image cannot be decoded.") from None
        return _encode(upright, pil_format)


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
