"""`stopbandit checkpoint inspect|reset` as an operator runs them, on a dir store."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import Checkpoint, DirCheckpointStore

STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
TOPIC = "events"


def stopbandit(*args):
    """Run the command; return the completed process (never raises on exit codes)."""
    return subprocess.run(
        [STOPBANDIT, *map(str, args)], capture_output=True, text=True, check=False
    )


def setup(tmp_path, arms=None):
    """A config file with a dir store in tmp_path; the store and the config."""
    settings = {
        "kafka": {"events_topic": TOPIC},
        "checkpoint": {"store": "dir", "dir": str(tmp_path / "ckpt")},
        "log": {"format": "json"},
    }
    if arms:
        settings["arms"] = arms
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path, DirCheckpointStore(tmp_path / "ckpt"), load_config(path)


def save(store, config, partition, offset):
    """A checkpoint of an empty core of `config`."""
    state = ControllerCore(config).snapshot()
    store.save(Checkpoint(TOPIC, partition, offset, 1.0, state, 0.0))


def test_inspect_without_a_checkpoint_says_so(tmp_path):
    """No copy at all: one line, exit 0."""
    path, _, _ = setup(tmp_path)
    result = stopbandit("checkpoint", "inspect", "2", "--config", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{TOPIC}[2]: no checkpoint"


def test_inspect_lists_a_corrupt_newest_and_the_valid_previous(tmp_path):
    """Newest corrupt, previous valid: both listed with their state; usable, so exit 0."""
    path, store, config = setup(tmp_path)
    save(store, config, 0, 4)
    save(store, config, 0, 6)
    store.path(TOPIC, 0).write_bytes(b"\x1f\x8b garbage")

    result = stopbandit("checkpoint", "inspect", "0", "--config", path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{TOPIC}[0] {TOPIC}-0.json.gz: corrupt: unreadable")
    assert lines[1].startswith(f"{TOPIC}[0] {TOPIC}-0.prev.json.gz: valid: offset 4")
    assert "Traceback" not in result.stderr


def test_inspect_exits_1_when_nothing_is_usable(tmp_path):
    """Every copy corrupt, or written for other arms: exit 1, with the reasons."""
    path, store, _ = setup(tmp_path)
    _, other_store, other = setup(tmp_path / "other", arms=[0.5, 1.0])
    save(other_store, other, 1, 3)
    store.path(TOPIC, 1).write_bytes(other_store.path(TOPIC, 1).read_bytes())
    store.path(TOPIC, 0).write_bytes(b"")

    corrupt = stopbandit("checkpoint", "inspect", "0", "--config", path, "--json")
    foreign = stopbandit("checkpoint", "inspect", "1", "--config", path)

    assert corrupt.returncode == 1
    [copy] = json.loads(corrupt.stdout)["copies"]
    assert (copy["valid"], copy["error"]) == (False, "empty")
    assert foreign.returncode == 1
    assert "unusable: checkpoint written for arms [0.5, 1.0]" in foreign.stdout


def test_reset_needs_yes_then_writes_a_fresh_checkpoint_and_keeps_the_old_files(tmp_path):
    """Without --yes nothing changes; with it a valid empty checkpoint at the offset, old kept."""
    path, store, _ = setup(tmp_path)
    store.path(TOPIC, 0).write_bytes(b"bit-flipped")

    dry = stopbandit("checkpoint", "reset", "0", "--config", path, "--offset", "5")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would write")
    assert store.path(TOPIC, 0).read_bytes() == b"bit-flipped"

    done = stopbandit("checkpoint", "reset", "0", "--config", path, "--offset", "5", "--yes")

    assert done.returncode == 0, done.stderr
    loaded = DirCheckpointStore(tmp_path / "ckpt").load(TOPIC, 0)
    assert (loaded.offset, loaded.state["learner"]["learned"], loaded.fell_back) == (5, 0, None)
    kept = [p for p in (tmp_path / "ckpt").iterdir() if ".reset-" in p.name]
    assert [p.read_bytes() for p in kept] == [b"bit-flipped"]
    assert stopbandit("checkpoint", "inspect", "0", "--config", path).returncode == 0


def test_reset_refuses_an_offset_that_is_not_one(tmp_path):
    """A bad --offset is a usage error (exit 2) naming the choices."""
    path, _, _ = setup(tmp_path)
    result = stopbandit("checkpoint", "reset", "0", "--config", path, "--offset", "soon")
    assert result.returncode == 2
    assert "committed, earliest, latest or a number" in result.stderr
