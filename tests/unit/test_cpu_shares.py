"""bench.cpu_shares counts a group's CPU, a child that ran and ended inside the window included."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu_shares import CpuMeter, one_line

BURN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"


def test_a_child_reaped_inside_the_window_counts_in_its_group() -> None:
    shell = subprocess.Popen(
        ["sh", "-c", f'sleep 0.2; "{sys.executable}" -c "$BURN"; sleep 2'],
        env={**os.environ, "BURN": BURN},
    )
    try:
        meter = CpuMeter({"shell": [shell.pid], "me": [os.getpid()]}, own_only=frozenset({"me"}))
        meter.start()
        time.sleep(1.2)  # the burner has run 0.4 s of CPU and been reaped by the shell
        shares = meter.stop(requests=100)
    finally:
        shell.kill()
        shell.wait()
    assert shares["cpu_ms_per_request"]["shell"] >= 3.5  # 0.4 s over 100 requests, less ticks
    assert shares["cores"]["me"] < 0.2  # the bench's own threads only, not its children
    assert shares["cores"]["machine"] >= shares["cores"]["shell"]
    assert "shell" in one_line(shares)
    assert one_line(shares).startswith("shell ")
