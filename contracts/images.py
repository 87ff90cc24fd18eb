"""What an image is, decided from its bytes: JPEG or PNG, never a name or a declared type.

Evidence and after-photos are served to browsers, so their media type must come from here: a
declared type is text anyone can write (``text/html`` made a stored script run).
"""

from __future__ import annotations

import struct
from typing import Literal

ImageType = Literal["image/jpeg", "image/png"]
"""The only media types evidence may have: the console serves a frame as its type."""
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXTENSIONS: dict[ImageType, str] = {"image/jpeg": "jpg", "image/png": "png"}
# JPEG start-of-frame markers (all but DHT c4, JPG c8, DAC cc), which carry the image size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class ImageError(ValueError):
    """Bytes that are not a readable JPEG or PNG."""


def image_type(data: bytes) -> ImageType | None:
    """``image/jpeg`` or ``image/png`` from the magic number; None for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if data.startswith(PNG_MAGIC):
        return "image/png"
    return None


def image_type_and_size(data: bytes) -> tuple[ImageType, int, int]:
    """(type, width, height) of a JPEG or PNG, read from its header; else ImageError."""
    try:
        return _type_and_size(data)
    except struct.error as exc:  # a header cut short
        raise ImageError(f"a damaged image header: {exc}") from exc


def _type_and_size(data: bytes) -> tuple[ImageType, int, int]:
    if data.startswith(PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("a PNG without its IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return "image/png", width, height
    if data.startswith(JPEG_MAGIC):
        position = 2
        while position + 9 < len(data):
            if data[position] != 0xFF:
                raise ImageError(f"a damaged JPEG: no marker at byte {position}")
            marker = data[position + 1]
            if marker == 0xFF:  # fill byte
                position += 1
                continue
            (length,) = struct.unpack(">H", data[position + 2 : position + 4])
            if marker in _SOF:
                height, width = struct.unpack(">HH", data[position + 5 : position + 9])
                return "image/jpeg", width, height
            position += 2 + length
        raise ImageError("a JPEG without a frame header")
    raise ImageError("only JPEG and PNG images are accepted")
