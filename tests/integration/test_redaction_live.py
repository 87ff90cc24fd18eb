"""The live edge worker on the demo camera: the console's copies it publishes hide the faces.

bus.jpg held as a camera with the example config's fire lane round the bus, the real
detector, a private Mosquitto; the opened event is taken off the broker as ingest gets it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from civicwatch.gateway import build_gateway
from contracts.events import EvidenceLabel, Phase
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig, ZoneConfig
from edge.config import DetectorSettings, EdgeSettings
from edge.detector import create_detector
from edge.redaction_eval import IndependentFaces
from tests.conftest import MosquittoProcess
from tests.integration.test_edge_publisher import AckingIngest
from tests.unit.edge.conftest import CAMERA, GATEWAY, SITE
from tests.unit.edge.test_redaction import assert_bus_faces_hidden
from tests.waiting import wait_for


def test_the_demo_cameras_published_copies_hide_the_bystanders_faces(
    mosquitto: MosquittoProcess, tmp_path: Path, model_path: Path
) -> None:
    """Before: the published copy was the original re-encoded, both faces sharp."""
    lane = ZoneConfig(
        id="fire-lane-gate",
        kind="fire_lane",
        polygon=[[0, 450], [810, 450], [810, 900], [0, 900]],
        dwell_seconds=2,
    )
    camera = CameraConfig(id=CAMERA, source="pkg://ultralytics/assets/bus.jpg", fps=5, zones=[lane])
    gateway = GatewayConfig(id=GATEWAY, cameras=[camera])
    site = SiteConfig(id=SITE, gateways=[gateway])
    settings = EdgeSettings(data_dir=tmp_path / "edge")
    detector = create_detector(DetectorSettings(model=str(model_path)))
    ingest = AckingIngest(mosquitto.settings)
    stop = threading.Event()
    worker = threading.Thread(
        target=build_gateway(site, gateway, settings, mosquitto.settings, detector).run,
        args=(stop,),
    )
    worker.start()
    try:
        wait_for(lambda: any(e.phase is Phase.OPENED for e in ingest.received), 60)
    finally:
        stop.set()
        worker.join(timeout=15)
        ingest.stop()
    opened = next(e for e in ingest.received if e.phase is Phase.OPENED)
    panoramas = [f for f in opened.evidence if f.label is not EvidenceLabel.CLOSEUP]
    assert len(panoramas) >= 2
    assert_bus_faces_hidden(panoramas, detector, IndependentFaces())
