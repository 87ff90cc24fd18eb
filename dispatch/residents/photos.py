"""A resident's photo, checked by its bytes and stored without metadata.

Only JPEG and PNG are taken, decided from the file's own signature and its decoder, never from
the name or the declared type. The size is bounded before decoding (bytes, then the pixel count
from the header), so a small file that inflates to gigapixels is refused undecoded.

A JPEG that already fits (longest side at most ``max_side``, grey or YCbCr, upright) is copied
losslessly, segment by segment: only the tables, the frame header and the scans are kept, every
APPn segment (EXIF with GPS, XMP, ICC, MPF, thumbnails) and comment is dropped, and nothing after
the end-of-image marker survives (a polyglot's tail). The copy is then decoded at 1/8 scale, which
still reads every entropy-coded byte, so a truncated or garbled file is refused. Any other photo
(larger, PNG, CMYK, rotated by its EXIF orientation, an unusual JPEG process) is decoded and
re-encoded from its pixels, the orientation applied first, so the picture still stands up.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass

from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile

from contracts.images import image_type
from dispatch.config import PhotoLimits

JPEG_QUALITY = 88
ORIENTATION_TAG = 0x0112
# A minimal JFIF header (version 1.1, 1:1 aspect, no thumbnail), written when the original had
# one: with it a three-component JPEG is read as YCbCr, as the original was.
_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
# Segments the lossless copy keeps: baseline, extended and progressive frames (Huffman), the
# Huffman and quantisation tables, the restart interval. A scan (SOS) is kept with its data.
_KEPT = frozenset({0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD})
_SOS, _EOI, _APP0, _APP14, _COM = 0xDA, 0xD9, 0xE0, 0xEE, 0xFE
# The end of a scan's entropy-coded data: 0xFF followed by anything but a stuffed zero, a
# restart marker or another fill byte.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


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
    """Check ``data`` and return its clean copy; raises PhotoError. ``number`` (1-based)
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
        if isinstance(image, JpegImageFile) and _fits_as_is(image, limits.max_side):
            copied = _lossless_jpeg(data, image)
            if copied is not None:
                return copied
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


def _fits_as_is(image: JpegImageFile, max_side: int) -> bool:
    """Whether the JPEG can be stored as a lossless copy: small enough, grey or YCbCr (an
    Adobe RGB-transform file is re-encoded), and upright (no EXIF orientation to apply)."""
    if max(image.size) > max_side or image.mode not in ("L", "RGB"):
        return False
    if image.mode == "RGB" and "adobe" in image.info and image.info.get("adobe_transform") != 1:
        return False
    return "exif" not in image.info or image.getexif().get(ORIENTATION_TAG, 1) == 1


class _DamagedJpegError(ValueError):
    """The JPEG's segment structure does not hold (cut short, no end marker, bad length)."""


def _lossless_jpeg(data: bytes, header: JpegImageFile) -> CleanPhoto | None:
    """The JPEG with its tables, frame and scans only, proven to decode; None when it uses a
    segment outside the kept set (the caller re-encodes it). Raises on a damaged file."""
    stripped = _strip_jpeg(data, had_jfif="jfif" in header.info)
    if stripped is None:
        return None
    copy = JpegImageFile(io.BytesIO(stripped))
    if copy.size != header.size or copy.mode != header.mode:
        raise _DamagedJpegError("the copy's frame differs from the original's")
    # 1/8 scale: the DC coefficients only, but every entropy-coded byte is still decoded, so a
    # truncated or garbled scan fails here as it would at full size.
    copy.draft(copy.mode, (math.ceil(copy.width / 8), math.ceil(copy.height / 8)))
    copy.load()
    return CleanPhoto(
        data=stripped,
        sha256=hashlib.sha256(stripped).hexdigest(),
        content_type="image/jpeg",
        width=header.width,
        height=header.height,
    )


def _strip_jpeg(data: bytes, *, had_jfif: bool) -> bytes | None:
    """SOI, a minimal JFIF header if the original had one, an Adobe colour-transform segment if
    it had one, then its DQT/DHT/DRI/SOF segments and scans up to EOI, in their order."""
    end = len(data)
    parts = [b"\xff\xd8", _JFIF if had_jfif else b""]
    pos = 2
    while True:
        if pos >= end or data[pos] != 0xFF:
            raise _DamagedJpegError(f"no marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= end:
            raise _DamagedJpegError("cut off before its end marker")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            parts.append(b"\xff\xd9")
            return b"".join(parts)  # whatever follows the end marker is dropped
        if pos + 2 > end:
            raise _DamagedJpegError("cut off in a segment header")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            raise _DamagedJpegError(f"a segment of {length} bytes at byte {pos} runs past the end")
        segment = data[pos - 2 : pos + length]
        pos += length
        if marker == _APP14 and length == 14 and segment[4:9] == b"Adobe":
            parts.append(segment)  # version, flags and colour transform: how to read the pixels
            continue
        if 0xE0 <= marker <= 0xEF or marker == _COM:
            continue  # EXIF, XMP, ICC, MPF, JFIF thumbnails, maker notes, comments
        if marker == _SOS:
            scan_end = _SCAN_END.search(data, pos)
            if scan_end is None:
                raise _DamagedJpegError("a scan without an end")
            parts.append(segment)
            parts.append(data[pos : scan_end.start()])
            pos = scan_end.start()
            continue
        if marker not in _KEPT:
            return None  # arithmetic coding, lossless, hierarchical, DNL...: re-encoded
        parts.append(segment)


def _reencode(image: Image.Image, content_type: str, max_side: int) -> CleanPhoto:
    """The pixels alone, in a new file: no metadata of the original is carried over. No
    ``optimize``: it costs a second pass over the data for a few per cent of bytes."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    pixels = image.convert("RGBA" if has_alpha and content_type == "image/png" else "RGB")
    pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    pixels.info = {}  # icc profiles, comments, text chunks: none of it is written
    out = io.BytesIO()
    if content_type == "image/jpeg":
        pixels.save(out, format="JPEG", quality=JPEG_QUALITY)
    else:
        pixels.save(out, format="PNG")
    data = out.getvalue()
    return CleanPhoto(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=content_type,
        width=pixels.width,
        height=pixels.height,
    )
