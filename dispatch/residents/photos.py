"""A resident's photo, checked by its bytes and re-encoded without metadata before storing.

Only JPEG and PNG are taken, decided from the file's own signature and its decoder, never from
the name or the declared type. The size is bounded before decoding (bytes, then the pixel count
from the header), so a small file that inflates to gigapixels is refused undecoded. The stored
copy is a fresh encoding of the pixels: EXIF (GPS included), XMP, comments and text chunks
never reach the disk. The EXIF orientation is applied first, so the picture still stands up.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile

from contracts.images import image_type
from dispatch.config import PhotoLimits

JPEG_QUALITY = 88


@dataclass(frozen=True, slots=True)
class CleanPhoto:
    """The stored copy: its bytes, their SHA-256, its type and size in pixels."""

    data: bytes
    sha256: str
    content_type: str
    width: int
    height: int


class PhotoError(ValueError):
    """A photo refused; ``code`` (``report_photo_*``) and ``params`` name the rule for a page."""

    def __init__(self, message: str, code: str, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


def clean_photo(data: bytes, limits: PhotoLimits, number: int = 1) -> CleanPhoto:
    """Check ``data`` and return its clean re-encoding; raises PhotoError. ``number`` (1-based)
    names the photo in the refusal."""
    if len(data) > limits.max_bytes:
        raise PhotoError(
            f"photo {number} has {len(data)} bytes; at most {limits.max_bytes}",
            "report_photo_too_large",
            number=number,
            limit_mb=round(limits.max_bytes / 1024 / 1024, 1),
        )
    declared = image_type(data)
    if declared is None:
        raise PhotoError(
            f"photo {number} is no JPEG or PNG file", "report_photo_type", number=number
        )
    expected_format = "JPEG" if declared == "image/jpeg" else "PNG"
    try:
        # The format's own decoder class, not Image.open: no other format is ever tried, and
        # no plugin patched into Image.open (ultralytics patches it for HEIF) runs.
        opener = JpegImageFile if declared == "image/jpeg" else PngImageFile
        image: Image.Image = opener(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_pixels:
            raise PhotoError(
                f"photo {number} has {width}x{height} pixels; at most {limits.max_pixels}",
                "report_photo_too_many_pixels",
                number=number,
                limit_mp=round(limits.max_pixels / 1_000_000, 1),
            )
        scale = limits.max_side / max(width, height)
        if declared == "image/jpeg" and scale < 1:
            # Decode at the smallest DCT scale that still covers the stored size: a phone's
            # 12 MP photo then costs a fraction of a full decode (the thumbnail finishes it).
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()  # a truncated or corrupt file fails here, before anything is stored
        upright = ImageOps.exif_transpose(image)
    except PhotoError:
        raise
    except Exception:  # whatever the decoder raises on hostile bytes: unreadable, a 422
        raise PhotoError(
            f"photo {number} cannot be read as a {expected_format} picture",
            "report_photo_damaged",
            number=number,
        ) from None
    return _reencode(upright, declared, limits.max_side)


def _reencode(image: Image.Image, content_type: str, max_side: int) -> CleanPhoto:
    """The pixels alone, in a new file: no metadata of the original is carried over."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    pixels = image.convert("RGBA" if has_alpha and content_type == "image/png" else "RGB")
    pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    pixels.info = {}  # icc profiles, comments, text chunks: none of it is written
    out = io.BytesIO()
    if content_type == "image/jpeg":
        pixels.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        pixels.save(out, format="PNG", optimize=True)
    data = out.getvalue()
    return CleanPhoto(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        width=pixels.width,
        height=pixels.height,
    )
