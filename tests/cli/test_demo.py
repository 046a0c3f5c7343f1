"""`stopbandit demo` as a new user runs it: one command, an embedded broker, a summary.

How the demo can equal `stopbandit simulate`. The demo's fleet generates the
simulator's requests (same seed, same request ids, same random draws) and
draws each threshold with `PolicyClient.choose` from policies that really
travel through the broker: the daemon learns from the events topic and
publishes signed policies, which the nodes follow on the policies topic. The
daemon publishes only at the simulator's publish points: after every 1000
requests the fleet flushes its events, waits until the daemon has processed
all of them and published a round, and waits until every node holds each
segment's newest version; only then does it make the next request. So the
daemon's core sees the simulator's events in the simulator's order (one
events partition) and publishes from the same state, and the final greedy
thresholds must be equal, not close. Versions in the decisions differ (the
daemon's carry a wall-clock floor); nothing learns from them.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

STOPBANDIT = str(Path(sys.executable).with_name("stopbandit"))
INTERACTIONS = 6000
SEED = 2


def run_json(*args: str, cwd: Path) -> dict:
    """Run a stopbandit command that prints one JSON object; fail with its stderr otherwise."""
    result = subprocess.run(
        [STOPBANDIT, *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_demo_saves_tokens_and_reaches_the_simulators_thresholds(tmp_path: Path):
    """Tokens saved, EM within 1 point of never stopping early, and simulate's greedy thresholds."""
    args = ["--interactions", str(INTERACTIONS), "--seed", str(SEED)]
    demo = run_json("demo", *args, cwd=tmp_path)
    simulated = run_json("simulate", *args, cwd=tmp_path)

    assert demo["interactions"] == INTERACTIONS
    assert not demo["stopped_early"]
    assert demo["token_reduction"] > 0.0
    assert demo["em_drop_pts"] <= 1.0
    assert demo["segments"] == simulated["final_policy"]["arms"]
    assert set(demo["segments"].values()) != {1.0}  # the run moved off the reference arm
    assert demo["token_reduction"] == pytest.approx(simulated["final_policy"]["token_reduction"])
    assert demo["gap_closed"] == pytest.approx(simulated["final_policy"]["gap_closed"])
    assert demo["emitter"] == {"queued": 12000, "sent": 12000, "dropped": 0, "failed": 0}
    assert demo["daemon_events"] == 2 * INTERACTIONS
    plot = tmp_path / "stopbandit-demo" / "demo.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "stopbandit-demo" / "summary.json").read_text())
    assert saved == demo


def descendants(pid: int) -> set[int]:
    """Every live descendant of `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_cleanly_and_leaves_no_process(tmp_path: Path, signum: int):
    """Mid-run, a signal ends the demo with 128 + its number, a partial summary, no process left."""
    process = subprocess.Popen(
        [STOPBANDIT, "demo", "--interactions", "1000000", "--json", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        children: set[int] = set()
        deadline_s = time.monotonic() + 60
        while not children and time.monotonic() < deadline_s:
            children = descendants(process.pid)
            time.sleep(0.1)
        assert children, "the demo started no broker"
        time.sleep(5)  # let the fleet get going; the test holds whether or not it has
        os.kill(process.pid, signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 128 + signum, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["stopped_early"]
    assert summary["interactions"] < 1_000_000
    assert [pid for pid in children if alive(pid)] == []


# Makes the pseudo-terminal on stdin the controlling terminal of the new session, as a
# terminal emulator does for its shell, then runs the command in the foreground group.
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def read_until(master: int, wanted: bytes, timeout_s: float) -> bytes:
    """What the terminal showed until `wanted` appeared, the program closed it, or time ran out."""
    seen = b""
    deadline_s = time.monotonic() + timeout_s
    while wanted not in seen and time.monotonic() < deadline_s:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_ctrl_c_in_a_real_terminal_exits_130_with_the_summary(tmp_path: Path):
    """Ctrl-C reaches the demo only (its broker runs in its own session): rc 130, summary shown."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", TAKE_TERMINAL, STOPBANDIT, "demo", "--interactions", "1000000"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        start_new_session=True,
    )
    os.close(slave)
    try:
        started = read_until(master, b"requests", timeout_s=90)
        assert b"requests" in started, started[-2000:]
        time.sleep(2)
        os.write(master, b"\x03")  # the terminal turns it into SIGINT for the foreground group
        shown = read_until(master, b"summary.json", timeout_s=60)
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    text = shown.decode(errors="replace")
    assert returncode == 130, text[-3000:]
    assert "Traceback" not in text
    assert "stopped early" in text
    assert "summary" in text
