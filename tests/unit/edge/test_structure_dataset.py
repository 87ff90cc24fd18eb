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
    ROUND6_PHOTOS,
    ROUND6_STRETCH,
    ROUND6_TEXTURE,
    TEXTURE_IMAGE,
    LabelledPair,
    _with_traffic,
    build_fresh_look,
    build_held_out,
    build_round6_look,
    build_set,
    held_out_photos,
    painted_shed,
    skimage_data,
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


def test_dev_holds_still_pairs_of_moving_people_and_traffic(dev: list[LabelledPair]) -> None:
    names = [p.name for p in dev]
    assert names[:3] == [f"dsifn/{n}" for n in DSIFN_SPLIT["dev"]]
    real = [p for p in dev if p.name.endswith("traffic still")]
    made = [p for p in dev if p.name.endswith("moving traffic")]
    assert len(real) == 8
    assert len(made) == 2 * len(CLIP_SPLIT["dev"])
    assert names.index(real[0].name) == 15  # appended: round 5's 15 pairs come first
    for pair in real + made:
        assert pair.source == "still"
        assert not pair.truth.any()
        moved = np.abs(pair.before.astype(np.int16) - pair.after.astype(np.int16)).max(axis=2)
        assert (moved > 25).mean() >= 0.02, pair.name  # something moved
        assert {"car in view", "night IR"} <= {name for name, _ in pair.controls}


def test_generated_traffic_moves_the_same_cars_on_between_the_views() -> None:
    rng = np.random.default_rng(5)
    view = np.full((256, 256, 3), 120, np.uint8)
    car = ObjectCrop("car", np.full((30, 60, 3), 20, np.uint8))
    before, after = _with_traffic(view, view, [car], rng)
    dark_before, dark_after = before.max(axis=2) < 60, after.max(axis=2) < 60
    assert dark_before.any()
    assert dark_after.any()
    assert not np.array_equal(dark_before, dark_after)  # moved on, not standing
    assert abs(int(dark_before.sum()) - int(dark_after.sum())) < 0.6 * dark_before.sum()


def test_round6_look_draws_on_what_no_set_look_or_training_drew_on(
    shared_data: Path, finder: OpenVINODetector
) -> None:
    clip, low, high = ROUND6_STRETCH
    assert clip in CLIP_SPLIT["dev"]
    assert clip not in FRESH_LOOK_FRAMES
    # Round 5's training draws (middle third, then up to 20 s on at 10 fps) end at frame 730;
    # the third look's vtest stretch ended at 596; the clip has 795 frames.
    assert 730 < low < high <= 794
    used = {TEXTURE_IMAGE, "bus.jpg", "zidane.jpg", "china.jpg", "沪AF71017.jpg", "皖K66666.jpg"}
    assert not {*ROUND6_PHOTOS, ROUND6_TEXTURE} & used
    assert all((skimage_data() / name).is_file() for name in (*ROUND6_PHOTOS, ROUND6_TEXTURE))
    pairs, unsure = build_round6_look(shared_data, finder)
    assert [p.source for p in pairs] == ["still", "built"] * 3 + ["built"] * 4
    for pair in pairs:
        assert pair.before.shape == pair.after.shape == (256, 256, 3)
        assert pair.truth.any() == (pair.source == "built")
        assert {"shift 3 px", "rain"} <= {name for name, _ in pair.controls}
    assert len(unsure) <= 12
    again, _ = build_round6_look(shared_data, finder)
    assert all(np.array_equal(a.after, b.after) for a, b in zip(pairs, again, strict=True))


def test_dev_holds_camera_sized_pairs_with_a_painted_shed(dev: list[LabelledPair]) -> None:
    camera = [p for p in dev if "/camera " in p.name]
    assert [p.source for p in camera] == ["still", "built"] * len(CLIP_SPLIT["dev"])
    for pair in camera:
        assert pair.before.shape[:2] in {(576, 768), (352, 640)}  # the clips' own frames
        assert pair.truth.any() == (pair.source == "built")


def test_a_painted_shed_is_painted_where_its_truth_says() -> None:
    view = np.full((576, 768, 3), 90, np.uint8)
    built, truth = painted_shed(view, np.random.default_rng(8))
    changed = np.abs(built.astype(np.int16) - view.astype(np.int16)).max(axis=2) > 0
    assert 0.01 < truth.mean() < 0.07
    assert truth[: 576 // 3].sum() == 0  # the lower two thirds
    assert (changed & truth).sum() / truth.sum() > 0.95
    assert (changed & ~truth).sum() == 0
