"""The built structure sets and the camera controls, from the real shared clips and pairs.

The composited sheds are GENERATED (see edge.structure_dataset); the clips, DSIFN pairs and the
person and car crops are real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import DetectorSettings
from edge.detector import OpenVINODetector
from edge.structure_controls import ObjectCrop, camera_controls
from edge.structure_dataset import (
    CLIP_SPLIT,
    DSIFN_SPLIT,
    FRESH_LOOK_FRAMES,
    LabelledPair,
    build_fresh_look,
    build_held_out,
    build_set,
    held_out_photos,
    sklearn_china_photo,
)


@pytest.fixture(scope="module")
def finder(model_path: Path) -> OpenVINODetector:
    return OpenVINODetector(
        DetectorSettings(model=str(model_path), imgsz=640, confidence=0.15), max_batch=1
    )


@pytest.fixture(scope="module")
def dev(shared_data: Path, finder: OpenVINODetector) -> list[LabelledPair]:
    return build_set("dev", shared_data, finder)


def test_dev_and_test_share_no_source() -> None:
    assert not set(CLIP_SPLIT["dev"]) & set(CLIP_SPLIT["test"])
    assert not set(DSIFN_SPLIT["dev"]) & set(DSIFN_SPLIT["test"])


def test_the_dev_set_holds_real_still_pairs_and_generated_sheds(dev: list[LabelledPair]) -> None:
    sources = {p.source for p in dev}
    assert sources == {"dsifn", "still", "built"}
    for pair in dev:
        assert pair.before.shape == pair.after.shape == (*pair.truth.shape, 3)
        if pair.source == "still":
            assert not pair.truth.any()
        else:
            assert pair.truth.any()
    clips = {p.name.split("/")[0] for p in dev if p.source != "dsifn"}
    assert clips == {name.rsplit(".", 1)[0] for name in CLIP_SPLIT["dev"]}


def test_every_pair_carries_the_camera_controls(dev: list[LabelledPair]) -> None:
    names = {name for name, _ in dev[0].controls}
    for expected in ("gamma 0.6", "shift 3 px", "moving shadow", "rain", "night IR"):
        assert expected in names
    assert {"car in view", "person in view"} <= names  # real crops cut by the detector's box


def test_a_rebuild_gives_the_same_images(
    dev: list[LabelledPair], shared_data: Path, finder: OpenVINODetector
) -> None:
    again = build_set("dev", shared_data, finder)
    assert [p.name for p in again] == [p.name for p in dev]
    for first, second in zip(dev, again, strict=True):
        assert np.array_equal(first.after, second.after)
        assert np.array_equal(first.truth, second.truth)


def test_controls_keep_the_view_size_and_alter_it() -> None:
    rng = np.random.default_rng(1)
    view = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    car = ObjectCrop("car", np.full((20, 40, 3), 30, np.uint8))
    controls = camera_controls(view, 7, [car])
    assert [name for name, _ in controls][-1] == "car in view"
    for name, image in controls:
        assert image.shape == view.shape, name
        assert image.dtype == np.uint8, name
        assert not np.array_equal(image, view), name


def test_the_held_out_set_builds_sheds_into_photos_neither_set_uses(
    finder: OpenVINODetector,
) -> None:
    photos = held_out_photos()
    assert not {p.name for p in photos} & {*CLIP_SPLIT["dev"], *CLIP_SPLIT["test"]}
    pairs = build_held_out(photos, finder)
    assert len(pairs) == 2 * len(photos)
    for pair in pairs:
        assert pair.source == "built"
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert 0.02 < pair.truth.mean() < 0.5, pair.name
        assert {"person in view", "night IR"} <= {name for name, _ in pair.controls}
    with pytest.raises(ValueError, match="at least two photos"):
        build_held_out(photos[:1], finder)


def test_the_fresh_look_draws_frames_no_other_look_drew_and_a_new_texture(
    shared_data: Path, finder: OpenVINODetector
) -> None:
    assert set(FRESH_LOOK_FRAMES) == set(CLIP_SPLIT["test"])
    for low, high in FRESH_LOOK_FRAMES.values():
        assert low < high
    china = sklearn_china_photo()
    assert china.is_file()
    pairs, unsure = build_fresh_look(shared_data, china, finder)
    assert [p.source for p in pairs] == ["still", "built"] * (2 * len(FRESH_LOOK_FRAMES))
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any() == (pair.source == "built")
        assert {"shift 3 px", "rain"} <= {name for name, _ in pair.controls}
    assert 0 < len(unsure) <= 12
    again, _ = build_fresh_look(shared_data, china, finder)
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))
