"""`stopbandit run` with no broker to reach: it retries, and SIGTERM still ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOPBANDIT = str(Path(sys.executable).with_name("stopbandit"))


def test_sigterm_while_the_broker_is_unreachable_exits_0_without_a_traceback(tmp_path: Path):
    """Retries are logged as warnings; SIGTERM during them exits promptly, rc 0, no traceback."""
    config = tmp_path / "config.yaml"
    # Port 9 (discard) on loopback: nothing listens, every connection is refused.
    config.write_text(
        "kafka:\n  bootstrap_servers: 127.0.0.1:9\n  bootstrap_timeout_ms: 500\n"
        "http:\n  port: 0\nlog:\n  format: json\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOPBANDIT_")}
    process = subprocess.Popen(
        [STOPBANDIT, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert process.stderr is not None
        seen = ""
        deadline_s = time.monotonic() + 60
        while "broker.unavailable" not in seen and time.monotonic() < deadline_s:
            seen += process.stderr.readline()
        assert "broker.unavailable" in seen, seen[-2000:]
        os.kill(process.pid, signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, rest[-3000:]
    assert "Traceback" not in seen + rest
    assert "daemon.stopped_before_connecting" in rest
