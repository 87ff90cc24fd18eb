"""`civicwatch edge`, `replay`, `demo`, `eval` and `baseline accept`: a gateway's commands.

Server packages are imported only inside `demo`, so a gateway that installed
``civicwatch[edge]`` alone can run the others.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from civicwatch.config import CivicwatchConfig, ConfigError, load_config
from civicwatch.exit_codes import (
    EXIT_CONFIG,
    EXIT_MODEL,
    EXIT_PORT,
    EXIT_SOURCE,
    EXIT_UNCONFIRMED,
    CliError,
)
from contracts.sites import GatewayConfig, SiteConfig

if TYPE_CHECKING:
    from edge.detector import Detector

log = logging.getLogger("civicwatch")


def edge(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    site, gateway = _pick_gateway(config, args.gateway)
    detector = _detector(config)
    if detector is None:
        # A fallback, not the default: fire lanes and no-build zones keep working, and every
        # camera's status says no_detector, so the command centre sees it.
        log.error("running without a detector: class-agnostic paths only")
    _run_gateway(config, site, gateway, detector, _stop_on_signals())
    return 0


def eval_plates(args: argparse.Namespace) -> int:
    from edge.config import PlateSettings
    from edge.plate_eval import PlateFolderError, compare_with_baseline

    if args.frames:
        return _eval_plate_frames(args)
    settings = load_config(args.config).edge.plates if args.config else PlateSettings()
    try:
        result = compare_with_baseline(_labelled_folder(args.directory), settings)
    except PlateFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    print(result.model_dump_json())
    return 0


def _eval_plate_frames(args: argparse.Namespace) -> int:
    """`eval plates DIR --frames`: each scene's outcome a line, the JSON summary last.

    Exit 2: the folder is missing or holds no image named by a plate; 3: no detector (the
    config's, else $CIVICWATCH_MODEL, else the default model).
    """
    from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
    from edge.config import MODEL_ENV_VAR, DetectorSettings, EdgeSettings
    from edge.detector import ModelUnavailableError, create_detector
    from edge.detector import prepare_ultralytics_environment as prepare
    from edge.plate_eval import PlateFolderError, evaluate_frames, labelled_scenes
    from edge.plate_eval import terminal_progress as progress
    from edge.plate_net import PlateNetError
    from edge.plates import PlateReader

    directory = _labelled_folder(args.directory)
    try:
        labelled_scenes(directory)  # a wrong folder fails before the models load
    except PlateFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    if args.config:
        settings = load_config(args.config).edge
    else:
        model = os.environ.get(MODEL_ENV_VAR)
        detector_settings = DetectorSettings(model=model) if model else DetectorSettings()
        settings = EdgeSettings(detector=detector_settings)
    prepare(settings.data_dir)
    try:
        detector = create_detector(settings.detector)
    except ModelUnavailableError as exc:
        raise CliError(str(exc), EXIT_MODEL) from exc
    floor = args.floor if args.floor is not None else DEFAULT_PLATE_CONFIDENCE_FLOOR
    try:
        reader = PlateReader(settings.plates)
    except PlateNetError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    try:
        result = evaluate_frames(directory, detector, reader, floor, progress("scenes"))
    except PlateFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    for read in result.reads:
        found = ", ".join(read.reads) or "-"
        weak = f" (below floor: {read.below_floor})" if read.below_floor else ""
        print(f"{read.outcome}\t{read.expected}\t{found}{weak}")
    print(result.model_dump_json(exclude={"reads"}))
    return 0


def eval_structures(args: argparse.Namespace) -> int:
    from edge.config import StructureSettings
    from edge.structure_eval import PairFolderError, run_structure_evaluation

    settings = load_config(args.config).edge.structures if args.config else StructureSettings()
    try:
        run_structure_evaluation(_labelled_folder(args.directory), settings)
    except PairFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    return 0


def _labelled_folder(directory: Path) -> Path:
    if not directory.is_dir():
        raise ConfigError(directory, [f"{directory}: not a folder"])
    return directory


def baseline_accept(args: argparse.Namespace) -> int:
    from edge.capture import SourceError, grab_frame, read_image
    from edge.structures import BaselineStore

    config = load_config(args.config)
    found = config.camera(args.camera)
    if found is None:
        raise ConfigError(args.config, [f"{args.config}: no camera with id {args.camera!r}"])
    camera = found[2]
    try:
        image = read_image(args.image) if args.image else grab_frame(camera)
    except SourceError as exc:
        raise CliError(str(exc), EXIT_SOURCE) from exc
    store = BaselineStore(config.edge.baselines_dir)
    info = store.accept(camera.id, image, args.preset, note=args.note, by=args.by)
    print(info.model_dump_json())
    return 0


def _run_gateway(
    config: CivicwatchConfig,
    site: SiteConfig,
    gateway: GatewayConfig,
    detector: Detector | None,
    stop: threading.Event,
) -> None:
    from civicwatch.gateway import build_gateway
    from edge.plate_net import PlateNetError

    try:
        built = build_gateway(site, gateway, config.edge, config.broker, detector)
    except PlateNetError as exc:  # edge.plates.second_opinion's weights: refused at startup
        raise CliError(str(exc), EXIT_CONFIG) from exc
    built.run(stop)


def replay(args: argparse.Namespace) -> int:
    from civicwatch.replay import replay as replay_clip
    from edge.capture import ReplaySource, SourceError

    config = load_config(args.config)
    found = config.camera(args.camera)
    if found is None:
        raise ConfigError(args.config, [f"{args.config}: no camera with id {args.camera!r}"])
    site, gateway, camera = found
    # FFmpeg would print its own lines about a file it cannot read; ours says it in one.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        ReplaySource(args.source)  # a missing or unreadable clip fails before the model loads
        detector = _detector(config)
        if detector is None:
            return EXIT_MODEL
        summary = replay_clip(
            site,
            gateway,
            camera,
            config.edge,
            config.broker,
            detector,
            args.source,
            loop=args.loop,
            hold_last_seconds=args.hold_last,
            confirm_timeout_seconds=args.confirm_timeout,
        )
    except SourceError as exc:
        raise CliError(str(exc), EXIT_SOURCE) from exc
    print(summary.model_dump_json(indent=2))
    return 0 if summary.all_confirmed else EXIT_UNCONFIRMED


def demo(args: argparse.Namespace) -> int:
    from civicwatch.server import build_server
    from civicwatch.serving import ApiPortError, BackgroundApi

    config = load_config(args.config)
    site, gateway = _pick_gateway(config, None)
    detector = _detector(config)  # before the server starts: a missing model fails fast
    if detector is None:
        return EXIT_MODEL
    stop = _stop_on_signals()
    server = build_server(config)
    api = config.server.api
    try:
        http = BackgroundApi(server.app, api.host, api.port)
    except ApiPortError as exc:
        server.engine.dispose()
        raise CliError(str(exc), EXIT_PORT) from exc
    server.start()
    http.start()
    token = next((t for t in api.tokens if t.role.value == "dispatcher"), None)
    print(f"civicwatch demo: API on http://{api.host}:{api.port}/docs", file=sys.stderr)
    if token is not None:
        print(
            "  cases: curl -H 'Authorization: Bearer "
            f"{token.token.get_secret_value()}' http://{api.host}:{api.port}/api/v1/cases",
            file=sys.stderr,
        )
    try:
        _run_gateway(config, site, gateway, detector, stop)
    finally:
        http.stop()
        server.stop()
    return 0


def _detector(config: CivicwatchConfig) -> Detector | None:
    """The configured detector, or None after saying in one line why it cannot load."""
    from edge.detector import (
        ModelUnavailableError,
        create_detector,
        prepare_ultralytics_environment,
    )

    prepare_ultralytics_environment(config.edge.data_dir)
    try:
        return create_detector(config.edge.detector)
    except ModelUnavailableError as exc:
        print(f"civicwatch: {exc}", file=sys.stderr)
        return None


def _pick_gateway(
    config: CivicwatchConfig, gateway_id: str | None
) -> tuple[SiteConfig, GatewayConfig]:
    gateways = [(s, g) for s in config.sites for g in s.gateways]
    if gateway_id is None:
        if len(gateways) != 1:
            names = ", ".join(g.id for _, g in gateways)
            raise ConfigError(Path("--gateway"), [f"name one gateway with --gateway: {names}"])
        return gateways[0]
    found = config.gateway(gateway_id)
    if found is None:
        raise ConfigError(Path("--gateway"), [f"no gateway with id {gateway_id!r}"])
    return found


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    return stop
