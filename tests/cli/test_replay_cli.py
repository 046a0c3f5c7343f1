"""`stopbandit replay` as a user runs it: logs in; a table, JSON, a report or checkpoints out."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stopbandit.controller.config import load_config
from stopbandit.controller.core import ControllerCore
from stopbandit.controller.daemon.checkpoint_stores import DirCheckpointStore

DATA = Path(__file__).parents[1] / "data"
GOLDEN_LOG = DATA / "replay-golden.jsonl.gz"
GOLDEN_CONFIG = DATA / "replay-golden.yaml"
STOPBANDIT = str(Path(sys.executable).parent / "stopbandit")
GOLDEN_ARGS = ["replay", str(GOLDEN_LOG), "--config", str(GOLDEN_CONFIG), "--publish-every", "100"]


def stopbandit(*args, cwd=None):
    """Run the command; return the completed process (never raises on exit codes)."""
    return subprocess.run(
        [STOPBANDIT, *map(str, args)], capture_output=True, text=True, check=False, cwd=cwd
    )


@pytest.fixture(scope="module")
def golden_json(tmp_path_factory):
    """`replay --json --sweep --report --export-checkpoint` on the golden log, run once."""
    out = tmp_path_factory.mktemp("replay")
    result = stopbandit(
        *GOLDEN_ARGS,
        "--json",
        "--sweep",
        "token_cost_per_1k=0.005:0.05:4",
        "--report",
        out / "report",
        "--export-checkpoint",
        out / "checkpoints",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), out


def test_json_lists_every_policy_and_estimator_overall_and_per_segment(golden_json):
    """The output is one JSON document; `policies` has logged, fixed, learned and sweep entries."""
    document, _ = golden_json
    names = {p["name"] for p in document["policies"]}
    assert names == {
        "logged", "learned", "sweep:0.005", "sweep:0.02", "sweep:0.035", "sweep:0.05",
        *(f"fixed:{t}" for t in ("0.5", "0.7", "0.8", "0.9", "0.95", "0.99", "1")),
    }  # fmt: skip
    assert {p["estimator"] for p in document["policies"]} == {"ips", "snips", "dr"}
    assert len(document["segments"]) == 6
    for entry in document["segments"].values():
        assert len(entry["policies"]) == len(document["policies"])
    assert document["learned"]["greedy"]["qa/nq/qwq-32b"] == 0.99
    assert document["input"]["interactions"] == 3000


def test_json_estimates_equal_the_golden_values(golden_json):
    """The CLI computes what the library does (DR reward of threshold 0.95, overall)."""
    document, _ = golden_json
    (dr,) = [
        p for p in document["policies"] if p["name"] == "fixed:0.95" and p["estimator"] == "dr"
    ]
    assert dr["reward"] == pytest.approx(0.6805189468552748, abs=1e-9)
    assert dr["ci_low"] < dr["reward"] < dr["ci_high"]


def test_report_is_a_self_contained_page_with_two_plots(golden_json):
    """index.html embeds frontier.png and arms.png; no scripts."""
    _, out = golden_json
    report = out / "report"
    for name in ("frontier.png", "arms.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "<script" not in page
    assert "fixed:0.95" in page
    assert "qa/nq/qwq-32b" in page


def test_exported_checkpoints_start_a_core_with_the_learned_policies(golden_json):
    """Warm start: every partition's checkpoint restores into a core.

    Together they hold the learned policy of every segment.
    """
    document, out = golden_json
    config = load_config(GOLDEN_CONFIG)
    store = DirCheckpointStore(out / "checkpoints")
    greedy = {}
    for partition in range(config.kafka.partitions):
        checkpoint = store.load(config.kafka.events_topic, partition)
        assert checkpoint is not None
        assert checkpoint.watermark_s == pytest.approx(1_764_489_600.0 + 2999 * 0.01)
        core = ControllerCore(config)
        core.restore(checkpoint.state)
        greedy |= {s: p.greedy for s, p in core.policies.items() if s != "*"}
    assert greedy == document["learned"]["greedy"]
    assert len(document["checkpoint"]["files"]) == config.kafka.partitions


def test_table_output_names_policies_and_warns():
    """Without --json: a recommendation, a table of policies, bounds where support is missing."""
    result = stopbandit(*GOLDEN_ARGS, "--no-learned")
    assert result.returncode == 0, result.stderr
    assert "fixed:0.95" in result.stdout
    assert "bounds, not an interval" in result.stdout
    assert "│ learned" not in result.stdout  # --no-learned: no learned row
    assert result.stdout.startswith("recommendation: ")


def test_invalid_lines_are_counted_not_fatal(tmp_path):
    """Garbage, a wrong version and a truncated line are counted by kind; the rest replays."""
    log = tmp_path / "mixed.jsonl"
    lines = gzip.decompress(GOLDEN_LOG.read_bytes()).decode().splitlines()
    bad = ["garbage", '{"type": "decision", "v": 2}', lines[0][:20]]
    log.write_text("\n".join([*bad, *lines[:400]]) + "\n")
    result = stopbandit("replay", log, "--config", GOLDEN_CONFIG, "--no-learned", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["input"]["invalid"] == {"json": 2, "version": 1}
    assert document["input"]["interactions"] == 200


def test_simulate_then_replay(tmp_path):
    """The README flow: log a simulated fleet, then replay the log."""
    log = tmp_path / "events.jsonl.gz"
    simulated = stopbandit("simulate", "--interactions", "1500", "--log-events", log)
    assert simulated.returncode == 0, simulated.stderr
    result = stopbandit("replay", log, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["input"]["interactions"] == 1500


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["missing.jsonl"],
        [str(GOLDEN_LOG), "--sweep", "token_cost=1"],
        [str(GOLDEN_LOG), "--no-learned", "--sweep", "token_cost_per_1k=0.01"],
        [str(GOLDEN_LOG), "--bootstrap", "127.0.0.1:9"],
        [str(GOLDEN_LOG), "--folds", "1"],
    ],
)
def test_bad_usage_exits_2_with_a_message(args, tmp_path):
    """Missing input, unknown files, bad sweeps and conflicting flags are usage errors."""
    result = stopbandit("replay", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("stopbandit: ")


@pytest.fixture(scope="module")
def cut_log(tmp_path_factory):
    """A simulated log cut in half, as a copy interrupted mid-transfer leaves it."""
    folder = tmp_path_factory.mktemp("cut")
    log = folder / "events.jsonl.gz"
    simulated = stopbandit("simulate", "--interactions", "3000", "--log-events", log)
    assert simulated.returncode == 0, simulated.stderr
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    return log


def test_a_truncated_log_is_replayed_up_to_the_break_with_a_warning(cut_log):
    """No traceback: the file and the line it broke after are named, the rest is replayed."""
    result = stopbandit("replay", cut_log, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"warning: {cut_log}: unreadable after line" in result.stderr
    document = json.loads(result.stdout)
    assert 0 < document["input"]["interactions"] < 3000
    [damage] = document["input"]["damaged"]
    assert damage["path"] == str(cut_log)
    assert damage["reason"].startswith("EOFError")


def test_refuse_stops_at_a_damaged_log(cut_log):
    """--damaged-log refuse: exit 2 with the file and where, nothing printed on stdout."""
    result = stopbandit("replay", cut_log, "--damaged-log", "refuse", "--json")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"{cut_log}: unreadable after line" in result.stderr


def test_a_mislabelled_gz_is_named(tmp_path):
    """A plain log called .gz: exit 2 naming it (BadGzipFile), not a raw traceback."""
    log = tmp_path / "plain.jsonl.gz"
    log.write_bytes(b'{"v":1}\n')
    result = stopbandit("replay", log)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{log}: unreadable after line 0 (BadGzipFile" in result.stderr
