"""Residents' photos: JPEG and PNG by their bytes only, bounded before decoding, and stored as
a fresh encoding that carries none of the original's metadata (EXIF with GPS, comments, text)."""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, PngImagePlugin

from contracts.images import image_type
from dispatch.config import PhotoLimits
from dispatch.residents.photos import PhotoError, clean_photo

LIMITS = PhotoLimits()
GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg_with_gps(width: int = 64, height: int = 32, orientation: int = 1) -> bytes:
    """A real JPEG carrying a camera make, an orientation, GPS coordinates and a comment."""
    image = Image.new("RGB", (width, height), (200, 10, 10))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "ResidentPhone"
    gps = exif.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (31.0, 14.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"home address")
    return out.getvalue()


def png_with_text() -> bytes:
    image = Image.new("RGBA", (20, 10), (0, 0, 255, 128))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "my flat is 3-2-301")
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_the_original_carries_gps_so_the_test_can_fail() -> None:
    original = Image.open(io.BytesIO(jpeg_with_gps()))
    assert original.getexif().get_ifd(GPS_IFD)[1] == "N"
    assert original.info["comment"] == b"home address"


def test_exif_gps_and_comments_are_stripped_from_a_jpeg() -> None:
    clean = clean_photo(jpeg_with_gps(), LIMITS)
    stored = Image.open(io.BytesIO(clean.data))
    assert stored.format == "JPEG"
    assert clean.content_type == "image/jpeg"
    assert dict(stored.getexif()) == {}
    assert "exif" not in stored.info
    assert "comment" not in stored.info
    assert b"ResidentPhone" not in clean.data
    assert b"Exif" not in clean.data
    assert (clean.width, clean.height) == stored.size == (64, 32)


def test_the_orientation_is_applied_before_it_is_dropped() -> None:
    clean = clean_photo(jpeg_with_gps(64, 32, orientation=6), LIMITS)  # rotate 90 degrees
    assert (clean.width, clean.height) == (32, 64)


def test_png_text_chunks_are_stripped_and_transparency_kept() -> None:
    clean = clean_photo(png_with_text(), LIMITS)
    stored = Image.open(io.BytesIO(clean.data))
    assert (stored.format, stored.mode, clean.content_type) == ("PNG", "RGBA", "image/png")
    assert b"3-2-301" not in clean.data
    assert "Comment" not in stored.info


@pytest.mark.parametrize(
    "data",
    [
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        b"GIF89a" + bytes(40),
        b"%PDF-1.7 not a picture",
        b"",
    ],
    ids=["svg", "gif", "pdf", "empty"],
)
def test_anything_but_jpeg_or_png_by_its_bytes_is_refused(data: bytes) -> None:
    with pytest.raises(PhotoError) as refused:
        clean_photo(data, LIMITS, number=2)
    assert refused.value.code == "report_photo_type"
    assert refused.value.params == {"number": 2}


def test_a_gif_named_like_a_jpeg_is_still_a_gif() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "GIF")
    assert image_type(out.getvalue()) is None
    with pytest.raises(PhotoError, match="no JPEG or PNG"):
        clean_photo(out.getvalue(), LIMITS)


def test_a_jpeg_signature_on_garbage_is_refused_as_damaged() -> None:
    with pytest.raises(PhotoError) as refused:
        clean_photo(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50, LIMITS)
    assert refused.value.code == "report_photo_damaged"


def test_a_truncated_jpeg_is_refused() -> None:
    data = jpeg_with_gps(400, 300)
    with pytest.raises(PhotoError) as refused:
        clean_photo(data[: len(data) // 2], LIMITS)
    assert refused.value.code == "report_photo_damaged"


def test_too_many_bytes_is_refused_before_decoding() -> None:
    limits = PhotoLimits(max_bytes=2048)
    with pytest.raises(PhotoError) as refused:
        clean_photo(b"\xff\xd8\xff" + bytes(4096), limits)
    assert refused.value.code == "report_photo_too_large"


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"), [(8000, 6000), (50_000, 50_000)], ids=["over-ours", "over-pillows"]
)
def test_a_huge_pixel_count_is_refused_undecoded(width: int, height: int) -> None:
    bomb = _png_header_only(width, height)
    assert len(bomb) < 200
    with pytest.raises(PhotoError) as refused:
        clean_photo(bomb, LIMITS)
    assert refused.value.code == "report_photo_too_many_pixels"


def test_a_big_photo_is_scaled_down_to_the_longest_side() -> None:
    clean = clean_photo(jpeg_with_gps(1000, 500), PhotoLimits(max_side=256))
    assert (clean.width, clean.height) == (256, 128)


def test_a_plugin_patched_into_image_open_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """ultralytics replaces Image.open (HEIF support) in a process that imports it: the
    format's own decoder is called, so neither the patch nor its errors reach the intake."""

    def patched(*_args: object, **_kwargs: object) -> Image.Image:
        raise ModuleNotFoundError("No module named 'pi_heif'")

    monkeypatch.setattr(Image, "open", patched)
    assert clean_photo(jpeg_with_gps(), LIMITS).content_type == "image/jpeg"
    with pytest.raises(PhotoError) as refused:
        clean_photo(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 50, LIMITS)
    assert refused.value.code == "report_photo_damaged"


def test_a_large_jpeg_is_stored_at_the_longest_side_allowed() -> None:
    """Decoded at a reduced DCT scale (draft), then scaled to exactly ``max_side``."""
    big = Image.new("RGB", (3000, 1500), (90, 140, 200))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    clean = clean_photo(buffer.getvalue(), PhotoLimits(max_side=512))
    assert (clean.width, clean.height) == (512, 256)
    assert Image.open(io.BytesIO(clean.data)).size == (512, 256)


# --- the lossless copy of a JPEG that already fits ------------------------------------------


def noisy_jpeg(width: int = 240, height: int = 160, **save: object) -> bytes:
    """A real JPEG of random pixels (a re-encoding would change them), saved with ``save``."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def gps_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "ResidentPhone"
    gps = {1: "N", 2: (31.0, 14.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0), 18: "WGS-84"}
    exif.get_ifd(GPS_IFD).update(gps)
    return exif.tobytes()


def test_a_jpeg_that_fits_is_copied_losslessly_without_exif_gps_or_comments() -> None:
    original = noisy_jpeg(exif=gps_exif(), comment=b"home address", icc_profile=b"\x00" * 132)
    before = Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    assert before[18] == "WGS-84"  # so the test can fail
    assert b"Exif" in original
    assert b"WGS-84" in original
    clean = clean_photo(original, LIMITS)
    stored = Image.open(io.BytesIO(clean.data))
    assert dict(stored.getexif()) == {}
    assert dict(stored.getexif().get_ifd(GPS_IFD)) == {}
    assert not {"exif", "comment", "icc_profile"} & set(stored.info)
    for marker in (b"GPS", b"WGS-84", b"Exif", b"ResidentPhone", b"home address", b"ICC_PROFILE"):
        assert marker not in clean.data
    assert pixels(clean.data) == pixels(original)  # not a re-encoding: the same pixels
    assert (clean.width, clean.height, clean.content_type) == (240, 160, "image/jpeg")


def test_a_progressive_jpeg_is_copied_losslessly() -> None:
    original = noisy_jpeg(exif=gps_exif(), progressive=True)
    clean = clean_photo(original, LIMITS)
    assert b"WGS-84" not in clean.data
    assert b"Exif" not in clean.data
    assert pixels(clean.data) == pixels(original)


def test_a_polyglots_tail_after_the_end_marker_is_dropped() -> None:
    tail = b"<script>alert(1)</script>PK\x03\x04" + bytes(64)
    original = noisy_jpeg()
    clean = clean_photo(original + tail, LIMITS)
    assert clean.data.endswith(b"\xff\xd9")
    assert b"<script>" not in clean.data
    assert b"PK\x03\x04" not in clean.data
    assert pixels(clean.data) == pixels(original)


def test_an_app_segment_hiding_a_script_is_dropped() -> None:
    original = noisy_jpeg()
    payload = b"<html><script>alert(1)</script></html>"
    app9 = b"\xff\xe9" + (len(payload) + 2).to_bytes(2, "big") + payload
    clean = clean_photo(original[:2] + app9 + original[2:], LIMITS)
    assert b"<script>" not in clean.data
    assert pixels(clean.data) == pixels(original)


@pytest.mark.parametrize(
    "cut",
    [
        lambda data: data[: len(data) // 2],  # no end marker
        lambda data: data[: len(data) - 2],  # only the end marker missing
        lambda data: data[:1000] + os.urandom(8000) + data[9000:],  # a garbled scan
        lambda data: data[:4] + b"\xff\xff" + data[6:],  # a segment length past the end
        lambda data: data[:20] + b"\x00" + data[21:],  # a marker's 0xFF overwritten
    ],
    ids=["half", "no-eoi", "garbled", "bad-length", "no-marker"],
)
def test_a_damaged_jpeg_that_fits_is_refused(cut: Callable[[bytes], bytes]) -> None:
    original = noisy_jpeg(400, 300)
    with pytest.raises(PhotoError) as refused:
        clean_photo(cut(original), LIMITS)
    assert refused.value.code == "report_photo_damaged"


def test_a_rotated_jpeg_is_stored_upright() -> None:
    """Orientation 6 (rotate 90 degrees clockwise to view): the left half red, the right blue;
    stored upright, the top is red and the bottom blue, with no EXIF left to say otherwise."""
    image = Image.new("RGB", (64, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 32, 32))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    clean = clean_photo(out.getvalue(), LIMITS)
    stored = Image.open(io.BytesIO(clean.data)).convert("RGB")
    assert (clean.width, clean.height) == stored.size == (32, 64)
    top, bottom = stored.getpixel((16, 8)), stored.getpixel((16, 56))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert (top[0] > 200, top[2] < 60) == (True, True)
    assert (bottom[2] > 200, bottom[0] < 60) == (True, True)
    assert b"Exif" not in clean.data


def test_a_grey_jpeg_is_copied_and_an_arithmetic_one_is_reencoded_or_refused() -> None:
    grey = Image.frombytes("L", (80, 40), os.urandom(80 * 40))
    out = io.BytesIO()
    grey.save(out, "JPEG", quality=90, comment=b"flat 301")
    clean = clean_photo(out.getvalue(), LIMITS)
    assert b"flat 301" not in clean.data
    assert Image.open(io.BytesIO(clean.data)).mode == "L"
    # A frame type the copy does not keep (SOF9, arithmetic coding) is never copied as is.
    original = noisy_jpeg(64, 32)
    sof = original.index(b"\xff\xc0")
    odd = original[:sof] + b"\xff\xc9" + original[sof + 2 :]
    outcome: str | bytes
    try:
        outcome = clean_photo(odd, LIMITS).data
    except PhotoError as refused:
        outcome = refused.code
    assert outcome == "report_photo_damaged" or b"\xff\xc9" not in outcome
