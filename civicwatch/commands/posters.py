"""`civicwatch posters --site S [--building B] --out DIR --base-url URL [--format png|pdf]`:
printable A4 posters whose QR code opens the report page already located at the site (and
building): ``URL/report?t=<signed token>``.

Exit codes (civicwatch/exit_codes.py): 2 (EXIT_CONFIG) for a missing QR secret, an unknown site
or building, or an output folder that cannot be written; each is one line on stderr.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from civicwatch.config import load_config
from civicwatch.exit_codes import EXIT_CONFIG, CliError

if TYPE_CHECKING:
    from PIL import Image, ImageFont

A4_PIXELS = (1240, 1754)  # A4 at 150 dpi: sharp enough for a QR code read from a metre away
DPI = 150
TAGLINE = "扫码反映问题 / Scan to report a problem"
CJK_FONT_FALLBACK = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--site", required=True, help="the site (compound) id")
    parser.add_argument(
        "--building", action="append", default=[], help="a building's poster (repeatable)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write into")
    parser.add_argument(
        "--base-url", required=True, help="the server's public address, e.g. https://cw.example"
    )
    parser.add_argument("--format", choices=["png", "pdf"], default="png")
    parser.set_defaults(handler=posters)


def posters(args: argparse.Namespace) -> int:
    import os

    from dispatch.residents.intake import known_buildings
    from dispatch.residents.tokens import QrSigner

    config = load_config(args.config)
    secret = config.server.residents.qr_secret(os.environ)
    if secret is None:
        raise CliError(
            "no QR secret: set server.residents.qr_secret_file or qr_secret_env", EXIT_CONFIG
        )
    site = next((s for s in config.sites if s.id == args.site), None)
    if site is None:
        raise CliError(f"unknown site {args.site!r}", EXIT_CONFIG)
    known = known_buildings(config, config.server.residents, site.id)
    for building in args.building:
        if site.id in config.server.residents.buildings and building not in known:
            raise CliError(f"site {site.id} has no building {building!r}", EXIT_CONFIG)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = args.out / ".civicwatch-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CliError(f"cannot write into {args.out}: {exc.strerror}", EXIT_CONFIG) from None
    signer = QrSigner(secret)
    base = args.base_url.rstrip("/")
    name = site.name or site.id
    written = []
    for building in [None, *args.building]:
        token = signer.sign(site.id, building, int(time.time()))
        page = poster_image(f"{base}/report?t={token}", name, building)
        stem = f"poster-{site.id}" + (f"-{_safe(building)}" if building else "")
        path = args.out / f"{stem}.{args.format}"
        page.save(path, "PDF" if args.format == "pdf" else "PNG", resolution=DPI)
        written.append(str(path))
    print("\n".join(written))
    return 0


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def cjk_font_path() -> Path | None:
    """A font with Chinese glyphs: fontconfig's pick for WenQuanYi Micro Hei, else its path."""
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "-f", "%{file}", "WenQuanYi Micro Hei:lang=zh-cn"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found and Path(found).is_file():
            return Path(found)
    return CJK_FONT_FALLBACK if CJK_FONT_FALLBACK.is_file() else None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    path = cjk_font_path()
    if path is None:
        raise CliError("no CJK font found: install fonts-wqy-microhei", EXIT_CONFIG)
    return ImageFont.truetype(str(path), size)


def poster_image(url: str, site_name: str, building: str | None) -> Image.Image:
    """One A4 page: the compound (and building), the QR code, the bilingual line."""
    import segno
    from PIL import Image, ImageDraw

    width, height = A4_PIXELS
    page = Image.new("RGB", A4_PIXELS, "white")
    draw = ImageDraw.Draw(page)
    title = site_name + (f" · {building}" if building else "")
    _centred(draw, title, 180, _font(72), width)
    qr = segno.make(url, error="m")
    # Whole pixels per module (no resampling): every module stays square and sharp.
    scale = max(1, 900 // qr.symbol_size(scale=1, border=4)[0])
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=scale, border=4)
    code = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    side = code.width
    page.paste(code, ((width - side) // 2, 360))
    _centred(draw, TAGLINE, 360 + side + 60, _font(54), width)
    _centred(draw, url.split("?")[0], height - 160, _font(28), width)
    return page


def _centred(
    draw: object,
    text: str,
    top: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
) -> None:
    from PIL import ImageDraw

    assert isinstance(draw, ImageDraw.ImageDraw)
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) // 2, top), text, fill="black", font=font)
