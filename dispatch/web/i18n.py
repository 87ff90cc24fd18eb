"""The message catalogue: every word the console and worker view show, in Chinese and English.

Per language, ``locales/<language>.yaml`` plus one file per area in ``locales/<language>/``
(e.g. ``wall.yaml``), merged; both languages hold the same keys, and a key defined twice is an
error. Simplified Chinese is the
default, whatever the browser's Accept-Language says (the README promises it: a command centre's
machines are often set up in English); ``?lang=en``, remembered in the ``cw_lang`` cookie, picks
English.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import Request

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")
LANGUAGE_COOKIE = "cw_lang"
LOCALES_DIR = Path(__file__).resolve().parent / "locales"


class CatalogueError(Exception):
    """A locale file that is missing, unreadable or not a mapping of strings."""


def _flatten(prefix: str, value: Any, into: dict[str, str], source: Path) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, into, source)
    elif isinstance(value, str):
        into[prefix] = value
    else:
        raise CatalogueError(f"{source}: {prefix}: expected text, got {type(value).__name__}")


def load_catalogue(language: str, folder: Path = LOCALES_DIR) -> dict[str, str]:
    """The messages of ``language`` as dotted keys (``state.new`` -> ``待派遣``)."""
    messages: dict[str, str] = {}
    area_files = sorted((folder / language).glob("*.yaml"))
    for path in [folder / f"{language}.yaml", *area_files]:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogueError(f"{path}: {exc}") from exc
        found: dict[str, str] = {}
        _flatten("", raw, found, path)
        twice = sorted(found.keys() & messages.keys())
        if twice:
            raise CatalogueError(f"{path}: {twice[0]}: already defined in another locale file")
        messages.update(found)
    return messages


@cache
def catalogue(language: str) -> dict[str, str]:
    """The shipped catalogue of ``language``, read once."""
    return load_catalogue(language)


@dataclass(frozen=True)
class Translator:
    """Looks messages up in one language; a missing key shows as itself (a test forbids them)."""

    language: str
    messages: Mapping[str, str]

    def __call__(self, key: str, **values: object) -> str:
        text = self.messages.get(key, key)
        return text.format(**values) if values else text

    def name(self, group: str, value: object | None) -> str:
        """The display name of an enum value, e.g. ``name("state", "new")``; None -> "none"."""
        key = "none" if value is None else str(value)
        return self.messages.get(f"{group}.{key}", key)

    def group(self, group: str) -> dict[str, str]:
        """Every message under ``group.``, keyed by the rest (for the page's JavaScript)."""
        prefix = f"{group}."
        return {k[len(prefix) :]: v for k, v in self.messages.items() if k.startswith(prefix)}


def translator(language: str) -> Translator:
    return Translator(language, catalogue(language))


def pick_language(request: Request) -> tuple[str, bool]:
    """The request's language and whether it was chosen now (``?lang=``: set the cookie).

    Accept-Language is deliberately ignored: Chinese unless the user chose English.
    """
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked, True
    remembered = request.cookies.get(LANGUAGE_COOKIE)
    if remembered in LANGUAGES:
        return remembered, False
    return DEFAULT_LANGUAGE, False
