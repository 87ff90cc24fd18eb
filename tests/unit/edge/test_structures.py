"""Illegal structures: the structure comparison, the baseline store and the watch.

The comparison is tested on the real DSIFN before/after pairs (SHARED_DATA/structures/dsifn)
and on those images altered in light, gamma, focus, noise and aim only.

The watch is tested on a GENERATED camera scene: a shed (walls, a blue corrugated roof, a door
and a window) is drawn onto real frames of vtest.avi, on the lawn that forms the no_build zone.
The frames under it are real and differ (compression, light), which the watch must tolerate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.events import EvidenceLabel, Phase
from contracts.sites import ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EvidenceSettings, StructureSettings
from edge.detections import BoolArray, Detections, Frame, Image
from edge.detector import OpenVINODetector
from edge.rules import RuleEvent
from edge.structure_dataset import SEED, ObjectFinder, clip_pairs
from edge.structure_eval import load_pairs, no_change_controls, pixel_scores
from edge.structure_features import (
    BackboneFeatures,
    learned_parts,
    learned_structure_change,
    transient_boxes_of,
)
from edge.structure_net import bundled_change_net
from edge.structures import (
    BaselineStore,
    StructureWatch,
    compare_structure,
    estimate_shift,
    lab_otsu_change,
)
from tests.unit.edge.conftest import T0
from tests.unit.edge.scenes import SHED, with_shed

CAMERA = "cam-roof"
# The lawn in the lower left of vtest.avi; people walk on the road above it, rarely on it.
LAWN = [[10, 330], [380, 380], [420, 570], [10, 570]]
# Real frames with nobody on the lawn; frame 0 is the baseline.
QUIET_FRAMES = (0, 100, 200, 300, 400, 500)


# --- real data --------------------------------------------------------------------------------


def _dsifn(shared_data: Path, name: str) -> tuple[Image, Image, BoolArray]:
    pairs = {p.name: p for p in load_pairs(shared_data / "structures" / "dsifn")}
    pair = pairs[name]
    return pair.before, pair.after, pair.truth


def _whole(image: Image) -> list[list[float]]:
    height, width = image.shape[:2]
    return [[0, 0], [width, 0], [width, height], [0, height]]


@pytest.fixture(scope="module")
def vtest_frames() -> dict[int, Image]:
    from tests.conftest import SHARED_DATA

    capture = cv2.VideoCapture(str(SHARED_DATA / "clips" / "vtest.avi"))
    frames: dict[int, Image] = {}
    for index in range(max(QUIET_FRAMES) + 1):
        ok, image = capture.read()
        assert ok, f"vtest.avi ended before frame {index}"
        if index in QUIET_FRAMES:
            frames[index] = np.asarray(image, dtype=np.uint8)
    capture.release()
    return frames


def _brighter(image: Image) -> Image:
    return np.asarray(np.clip(image.astype(np.float32) * 1.3 + 15, 0, 255), dtype=np.uint8)


# --- the comparison on DSIFN ------------------------------------------------------------------


def test_new_sheds_in_dsifn_0_2_are_found_better_than_lab_otsu(shared_data: Path) -> None:
    """0_2: new blue steel-roof sheds in courtyards; the truth mask is the label."""
    before, after, truth = _dsifn(shared_data, "0_2.png")
    settings = StructureSettings()
    change = compare_structure(before, after, _whole(before), settings)
    classical = lab_otsu_change(before, after, _whole(before), settings)
    _, recall, f1 = pixel_scores(change.mask, truth)
    assert change.changed
    assert change.conclusive
    assert f1 >= 0.6, f1
    assert recall >= 0.75, recall
    assert f1 > pixel_scores(classical.mask, truth)[2] + 0.2
    assert change.box is not None
    assert 0 < change.score <= 1


@pytest.mark.parametrize("name", ["1_1.png", "5_3.png"])
@pytest.mark.parametrize("control", range(8))
def test_light_blur_noise_and_shift_alone_raise_nothing(
    shared_data: Path, name: str, control: int
) -> None:
    before, _, _ = _dsifn(shared_data, name)
    alteration, altered = no_change_controls(before, seed=7)[control]
    change = compare_structure(before, altered, _whole(before), StructureSettings())
    assert not change.changed, f"{name} {alteration}: {change.changed_share:.3f}"
    assert change.changed_share < 0.005, alteration


def test_the_lab_otsu_baseline_alarms_on_light_alone(shared_data: Path) -> None:
    """Why the method compares structure: colour distance calls a brighter view a change."""
    before, _, _ = _dsifn(shared_data, "1_1.png")
    _, brighter = no_change_controls(before, seed=7)[0]
    assert lab_otsu_change(before, brighter, _whole(before), StructureSettings()).changed


def test_a_shift_of_two_percent_is_measured(shared_data: Path) -> None:
    before, _, _ = _dsifn(shared_data, "2_4.png")
    alteration, shifted = no_change_controls(before, seed=7)[7]
    assert alteration == "shift 2%"
    dx, dy = estimate_shift(before, shifted, StructureSettings().min_alignment_peak)
    assert dx == pytest.approx(5, abs=0.5)
    assert dy == pytest.approx(-5, abs=0.5)


def test_the_mask_stays_inside_the_zone(shared_data: Path) -> None:
    before, after, _ = _dsifn(shared_data, "4_4.png")
    triangle = [[0, 0], [200, 0], [0, 200]]
    change = compare_structure(before, after, triangle, StructureSettings())
    inside = np.zeros(before.shape[:2], dtype=np.uint8)
    cv2.fillPoly(inside, [np.array(triangle, dtype=np.int32)], 1)
    assert change.mask.any()
    assert not (change.mask & (inside == 0)).any()
    assert change.box is not None
    x1, y1, x2, y2 = change.box
    assert x1 >= 0
    assert y1 >= 0
    assert x2 <= 201
    assert y2 <= 201


def test_a_camera_turned_away_or_covered_is_inconclusive(shared_data: Path) -> None:
    before, _, _ = _dsifn(shared_data, "0_2.png")
    settings = StructureSettings()
    far = np.asarray(np.roll(before, 40, axis=1), dtype=np.uint8)  # 16 % to the side
    covered = np.zeros_like(before)
    for current, reason in ((far, "moved 40, 0 px"), (covered, "no contrast")):
        change = compare_structure(before, current, _whole(before), settings)
        assert not change.conclusive
        assert not change.changed
        assert reason in change.reason


def test_a_view_much_softer_or_noisier_than_its_baseline_is_not_judged(shared_data: Path) -> None:
    """Heavy blur (a fogged lens) or night noise would otherwise read as structure change."""
    before, _, _ = _dsifn(shared_data, "5_3.png")
    settings = StructureSettings()
    blurred = np.asarray(cv2.GaussianBlur(before, (0, 0), 2.5), dtype=np.uint8)
    noise = np.random.default_rng(3).normal(0, 12, before.shape)
    noisy = np.asarray(np.clip(before + noise, 0, 255), dtype=np.uint8)
    for current, reason in ((blurred, "softer"), (noisy, "more noise")):
        change = compare_structure(before, current, _whole(before), settings)
        assert not change.changed
        assert not change.conclusive
        assert reason in change.reason


def test_views_of_different_sizes_are_refused_with_a_reason(shared_data: Path) -> None:
    before, _, _ = _dsifn(shared_data, "0_2.png")
    smaller = np.asarray(cv2.resize(before, (128, 128)), dtype=np.uint8)
    with pytest.raises(ValueError, match="256x256 but the current view is 128x128"):
        compare_structure(before, smaller, _whole(before), StructureSettings())


# --- the baseline store -----------------------------------------------------------------------


def _stored(store: BaselineStore, preset: str | None = None) -> Image:
    image = store.get(CAMERA, preset)
    assert image is not None, f"no baseline for {CAMERA} preset {preset}"
    return image


def test_baselines_round_trip_per_camera_and_preset(tmp_path: Path, shared_data: Path) -> None:
    before, after, _ = _dsifn(shared_data, "0_2.png")
    store = BaselineStore(tmp_path / "baselines")
    assert store.get(CAMERA) is None
    info = store.register(CAMERA, before, at=T0, by="installer", note="commissioning")
    store.register(CAMERA, after, preset="roof-east")
    assert np.array_equal(_stored(store), before)
    assert np.array_equal(_stored(store, "roof-east"), after)
    assert (info.revision, info.registered_at, info.registered_by) == (1, T0, "installer")
    assert (tmp_path / "baselines" / f"{CAMERA}.png").is_file()
    assert (tmp_path / "baselines" / f"{CAMERA}@roof-east.json").is_file()


def test_accepting_a_view_keeps_the_old_baseline_in_history(
    tmp_path: Path, shared_data: Path
) -> None:
    before, after, _ = _dsifn(shared_data, "0_2.png")
    store = BaselineStore(tmp_path)
    store.register(CAMERA, before)
    info = store.accept(CAMERA, after, note="case 17 closed: permit shown")
    # A second store (another process: the CLI) sees the accepted view.
    fresh = BaselineStore(tmp_path)
    assert np.array_equal(_stored(fresh), after)
    assert fresh.info(CAMERA) == info
    assert (info.revision, info.note) == (2, "case 17 closed: permit shown")
    archived = cv2.imread(str(tmp_path / "history" / f"{CAMERA}.r1.png"))
    assert archived is not None
    assert np.array_equal(archived, before)


def test_bad_names_and_a_tampered_baseline_are_refused(tmp_path: Path, shared_data: Path) -> None:
    before, after, _ = _dsifn(shared_data, "0_2.png")
    store = BaselineStore(tmp_path)
    with pytest.raises(ValueError, match="preset"):
        store.register(CAMERA, before, preset="../etc")
    with pytest.raises(ValueError, match="BGR uint8"):
        store.register(CAMERA, before[..., 0])
    store.register(CAMERA, before)
    _ok, png = cv2.imencode(".png", after)
    (tmp_path / f"{CAMERA}.png").write_bytes(png.tobytes())
    with pytest.raises(ValueError, match=r"cam-roof\.png does not match the sha256"):
        BaselineStore(tmp_path).get(CAMERA)


# --- the watch on a generated scene -----------------------------------------------------------


def _zone() -> ZoneConfig:
    return ZoneConfig(id="lawn-no-build", kind=ZoneKind.NO_BUILD, polygon=LAWN, dwell_seconds=1)


def _watch(store: BaselineStore, span: float = 30.0) -> StructureWatch:
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=span
    )
    return StructureWatch(CAMERA, _zone(), settings, EvidenceSettings(), store)


def _run(watch: StructureWatch, images: Iterable[Image], start: float = 0.0) -> list[RuleEvent]:
    """One image per check: 10 s apart, the watch's check interval."""
    events: list[RuleEvent] = []
    for i, image in enumerate(images):
        at = T0 + timedelta(seconds=start + 10 * i)
        events += watch.update(Frame(image=image, index=i, timestamp=at))
    return events


@pytest.fixture
def store(tmp_path: Path, vtest_frames: dict[int, Image]) -> BaselineStore:
    baselines = BaselineStore(tmp_path / "baselines")
    baselines.register(CAMERA, vtest_frames[0], at=T0 - timedelta(days=30), by="installer")
    return baselines


def _sheds(frames: dict[int, Image], indices: Iterable[int]) -> list[Image]:
    return [with_shed(frames[i]) for i in indices]


def test_a_shed_that_persists_opens_exactly_one_violation(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    watch = _watch(store)
    events = _run(watch, _sheds(vtest_frames, (100, 200, 300, 400, 500)))
    assert [e.phase for e in events] == [Phase.OPENED]
    opened = events[0]
    # Changed at 0, 10, 20, 30 s: three checks by 20 s, but the 30 s span only at 30 s.
    assert opened.observed_at == T0 + timedelta(seconds=30)
    assert opened.started_at == T0
    assert opened.dwell_seconds == 30
    assert [f.label for f in opened.evidence] == [
        EvidenceLabel.BASELINE,
        EvidenceLabel.CURRENT,
        EvidenceLabel.CHANGE_MASK,
    ]
    assert opened.evidence[0].captured_at == T0 - timedelta(days=30)
    assert opened.object is not None
    assert opened.object.class_name == "structure"
    assert 0 < opened.object.confidence <= 1
    box = opened.object.box
    x1, y1, x2, y2 = SHED
    assert box.x1 <= x1 + 20
    assert box.y1 <= y1 + 20
    assert box.x2 >= x2 - 20
    assert box.y2 >= y2 - 20
    assert (box.x2 - box.x1) * (box.y2 - box.y1) < 3 * (x2 - x1) * (y2 - y1)
    assert watch.open_violations == 1


def test_checks_follow_the_schedule_by_frame_time(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    """With no span required, three shed frames a second apart would open if each were compared."""
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=0
    )
    watch = StructureWatch(CAMERA, _zone(), settings, EvidenceSettings(), store)
    shed = with_shed(vtest_frames[100])
    seconds = [0, 1, 2, 3, 9, 10, 15, 20]
    opened_at = [s for s in seconds if watch.update(Frame(shed, s, T0 + timedelta(seconds=s)))]
    assert opened_at == [20]


def test_a_change_seen_at_fewer_checks_than_needed_raises_nothing(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    """Two changed checks, then gone, then two again: never three in a row."""
    shed = _sheds(vtest_frames, (100, 200))
    quiet = [vtest_frames[300], vtest_frames[400]]
    assert _run(_watch(store), [*shed, *quiet, *shed]) == []


def test_a_change_over_a_span_shorter_than_required_raises_nothing(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    """Five changed checks over 40 s when 100 s are required: a lorry parked, not a shed."""
    events = _run(_watch(store, span=100.0), _sheds(vtest_frames, (100, 200, 300, 400, 500)))
    assert events == []


def test_light_changes_alone_raise_nothing(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    brighter = [_brighter(vtest_frames[i]) for i in (100, 200, 300, 400, 500)]
    assert _run(_watch(store), brighter) == []


def test_the_change_gone_for_enough_checks_clears(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    watch = _watch(store)
    opened = _run(watch, _sheds(vtest_frames, (100, 200, 300, 400)))
    quiet = [vtest_frames[i] for i in (100, 200, 300, 400)]
    cleared = _run(watch, quiet, start=40)
    assert [e.phase for e in opened] == [Phase.OPENED]
    assert [e.phase for e in cleared] == [Phase.CLEARED]
    assert cleared[0].violation_id == opened[0].violation_id
    assert cleared[0].observed_at == T0 + timedelta(seconds=60)  # the third quiet check
    assert [f.label for f in cleared[0].evidence] == [EvidenceLabel.CLEARED]


def test_accepting_the_view_clears_and_the_shed_is_not_raised_again(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    watch = _watch(store)
    opened = _run(watch, _sheds(vtest_frames, (100, 200, 300, 400)))
    # The console accepts the current view after the case closed (through the store).
    store.accept(CAMERA, with_shed(vtest_frames[400]), note="case closed: permitted shed")
    later = _run(watch, _sheds(vtest_frames, (100, 200, 300, 400, 500)), start=40)
    assert [e.phase for e in opened] == [Phase.OPENED]
    assert [e.phase for e in later] == [Phase.CLEARED]
    assert later[0].violation_id == opened[0].violation_id
    assert watch.open_violations == 0


def test_accepting_through_the_watch_clears_at_once(
    store: BaselineStore, vtest_frames: dict[int, Image]
) -> None:
    watch = _watch(store)
    _run(watch, _sheds(vtest_frames, (100, 200, 300, 400)))
    now = Frame(with_shed(vtest_frames[500]), 9, T0 + timedelta(seconds=45))
    assert [e.phase for e in watch.accept(now, note="permit shown")] == [Phase.CLEARED]
    info = store.info(CAMERA)
    assert info is not None
    assert info.note == "permit shown"
    assert _run(watch, _sheds(vtest_frames, (100, 200, 300, 400)), start=50) == []


def test_without_a_baseline_the_first_frame_becomes_it(
    tmp_path: Path, vtest_frames: dict[int, Image], caplog: pytest.LogCaptureFixture
) -> None:
    store = BaselineStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="edge.structures"):
        events = _run(_watch(store), [vtest_frames[0]])
    assert events == []
    assert np.array_equal(_stored(store), vtest_frames[0])
    assert "no baseline, registered the frame" in caplog.text


def test_a_frame_of_another_size_is_logged_not_raised(
    store: BaselineStore, vtest_frames: dict[int, Image], caplog: pytest.LogCaptureFixture
) -> None:
    small = np.asarray(cv2.resize(vtest_frames[100], (384, 288)), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="edge.structures"):
        assert _watch(store).update(Frame(small, 1, T0)) == []
    assert "structure check skipped" in caplog.text
    assert "register a new baseline" in caplog.text


def test_only_no_build_zones_are_watched(store: BaselineStore) -> None:
    parking = ZoneConfig(id="p", kind=ZoneKind.NO_PARKING, polygon=LAWN, dwell_seconds=30)
    with pytest.raises(ValueError, match="not a no_build zone"):
        StructureWatch(CAMERA, parking, StructureSettings(), EvidenceSettings(), store)


# --- the watch with learned features ----------------------------------------------------------


@pytest.fixture(scope="module")
def features(model_path: Path) -> BackboneFeatures:
    return BackboneFeatures(model_path)


def _learned_watch(store: BaselineStore, features: BackboneFeatures) -> StructureWatch:
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=30
    )
    return StructureWatch(CAMERA, _zone(), settings, EvidenceSettings(), store, features=features)


def test_the_learned_watch_opens_on_a_shed_that_persists(
    store: BaselineStore, vtest_frames: dict[int, Image], features: BackboneFeatures
) -> None:
    events = _run(_learned_watch(store, features), _sheds(vtest_frames, (100, 200, 300, 400)))
    assert [e.phase for e in events] == [Phase.OPENED]


def test_with_the_change_net_the_learned_watch_still_opens_on_the_shed(
    store: BaselineStore, vtest_frames: dict[int, Image], features: BackboneFeatures
) -> None:
    net = bundled_change_net()
    assert net is not None
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=30
    )
    watch = StructureWatch(
        CAMERA, _zone(), settings, EvidenceSettings(), store, features=features, net=net
    )
    assert watch.method == "learned + change net"
    events = _run(watch, _sheds(vtest_frames, (100, 200, 300, 400)))
    assert [e.phase for e in events] == [Phase.OPENED]
    # Light alone still raises nothing.
    quiet = StructureWatch(
        CAMERA, _zone(), settings, EvidenceSettings(), store, features=features, net=net
    )
    assert _run(quiet, [_brighter(vtest_frames[i]) for i in QUIET_FRAMES[1:]]) == []


def _person_on_the_lawn(frames: dict[int, Image], model_path: Path) -> tuple[Image, Detections]:
    """A real person cut by the detector's box from frame 100, pasted onto the lawn."""
    detector = OpenVINODetector(DetectorSettings(model=str(model_path)), max_batch=1)
    found = detector.detect(frames[100])
    people = [i for i, c in enumerate(found.class_id) if found.class_names[int(c)] == "person"]
    best = max(people, key=lambda i: float(found.confidence[i]))
    x0, y0, x1, y1 = np.round(found.xyxy[best]).astype(int)
    person = cv2.resize(frames[100][y0:y1, x0:x1], ((x1 - x0) * 2, (y1 - y0) * 2))
    height, width = person.shape[:2]
    view = frames[0].copy()
    view[400 : 400 + height, 150 : 150 + width] = person
    box = [[150.0, 400.0, 150.0 + width, 400.0 + height]]
    return view, Detections.create(box, [0.9], [found.class_id[best]], found.class_names)


def test_the_learned_watch_ignores_a_person_standing_on_the_lawn(
    store: BaselineStore,
    vtest_frames: dict[int, Image],
    features: BackboneFeatures,
    model_path: Path,
) -> None:
    view, detections = _person_on_the_lawn(vtest_frames, model_path)
    watch = _learned_watch(store, features)
    events: list[RuleEvent] = []
    for i in range(5):
        at = T0 + timedelta(seconds=10 * i)
        events += watch.update(Frame(image=view, index=i, timestamp=at), detections)
    assert events == []
    # The same view without the detector's box is taken for a structure: the box is what counts.
    unaware = _learned_watch(store, features)
    assert [e.phase for e in _run(unaware, [view] * 5)] == [Phase.OPENED]


# --- people in the baseline -------------------------------------------------------------------


@pytest.fixture(scope="module")
def walked_off(shared_data: Path) -> tuple[Image, Image]:
    """The dev set's `vtest/0 still` pair (real frames, nothing built): a man walking in the
    baseline crop has left the current one."""
    texture = np.full((64, 64, 3), 128, np.uint8)  # only the built pair uses it
    pairs = clip_pairs(shared_data / "clips" / "vtest.avi", texture, np.random.default_rng(SEED))
    still = pairs[0]
    assert still.name == "vtest/0 still"
    assert not still.truth.any()
    return still.before, still.after


@pytest.fixture(scope="module")
def finder(model_path: Path) -> ObjectFinder:
    return learned_parts(model_path).finder


def test_a_person_in_the_baseline_who_walked_off_is_no_change(
    walked_off: tuple[Image, Image], features: BackboneFeatures, finder: ObjectFinder
) -> None:
    before, after = walked_off
    settings, zone = StructureSettings(), _whole(before)
    now_only = transient_boxes_of(finder.detect(after))
    then = transient_boxes_of(finder.detect(before))
    assert then, "the detector finds the man in the baseline"
    # Only the current view's people discounted: where he stood is taken for a change.
    assert learned_structure_change(before, after, zone, settings, features, now_only).changed
    both = now_only + then
    assert not learned_structure_change(before, after, zone, settings, features, both).changed


def test_the_learned_watch_finds_the_baselines_people_itself(
    tmp_path: Path,
    walked_off: tuple[Image, Image],
    features: BackboneFeatures,
    finder: ObjectFinder,
) -> None:
    """Once per baseline revision, and the current view's when `update` gets no detections."""
    before, after = walked_off
    store = BaselineStore(tmp_path / "baselines")
    store.register(CAMERA, before, at=T0 - timedelta(days=30), by="installer")
    settings = StructureSettings(
        check_interval_seconds=10, persist_checks=3, persist_span_seconds=30
    )
    zone = ZoneConfig(id="crop", kind=ZoneKind.NO_BUILD, polygon=_whole(before))

    def watch(finder: ObjectFinder | None) -> StructureWatch:
        return StructureWatch(
            CAMERA, zone, settings, EvidenceSettings(), store, features=features, finder=finder
        )

    current = finder.detect(after)
    blind = watch(None)
    assert blind.method == "learned"
    events: list[RuleEvent] = []
    for i in range(5):
        events += blind.update(Frame(after, i, T0 + timedelta(seconds=10 * i)), current)
    assert [e.phase for e in events] == [Phase.OPENED]
    assert _run(watch(finder), [after] * 5) == []
