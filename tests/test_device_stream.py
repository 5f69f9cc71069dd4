"""Issue 24 on devices: `profile --device a --device b --shard` splits --data over real SSH devices
(this machine's Python behind OpenSSH servers on 127.0.0.1), merges the counts, and a device that
drops off mid-shard is finished by the next run with the same --resume folder."""
from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .helpers import chunk_parts
from .sshd import cut_connections, make_server

pytestmark = pytest.mark.device


def profile(*args):
    return CliRunner().invoke(cli, ["profile", *[str(a) for a in args], "--no-progress", "--json"])


def pair_config(path, servers):
    """One ssh config that knows every server's host key and holds every client key."""
    path.write_text("\n".join([
        "Host *", *[f"  IdentityFile {s.client_key}" for s in servers], "  IdentitiesOnly yes",
        "  StrictHostKeyChecking yes", "  LogLevel ERROR",
        "  UserKnownHostsFile " + " ".join(str(s.folder / "known_hosts") for s in servers),
    ]) + "\n")
    return path


def device_args(config, cache, *servers):
    args = ["--ssh-option", f"-F {config}", "--device-python", sys.executable, "--device-cache", str(cache)]
    for server in servers:
        args += ["--device", server.device]
    return args


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=(400, 4, 4, 3)).astype(np.float32)
    x = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2).astype(np.uint8)
    path = tmp_path_factory.mktemp("eval") / "eval.npz"
    np.savez(path, x=x, y=rng.integers(0, 4, size=400))
    return path


def test_sharded_run_equals_the_local_run(converted_small, labelled, small_cnn_file, tmp_path):
    servers = [make_server(tmp_path / f"sshd{i}").start() for i in range(2)]
    try:
        out, _ = converted_small
        model = out / "small_cnn_int8.tflite"
        common = [model, "--data", labelled, "--reference", small_cnn_file, "--runs", 5, "--chunk-size", 16]
        local = profile(*common, "--resume", tmp_path / "local")
        assert local.exit_code == 0, local.output
        config = pair_config(tmp_path / "ssh_config", servers)
        sharded = profile(*common, "--resume", tmp_path / "sharded", "--shard",
                          *device_args(config, tmp_path / "cache", *servers))
        assert sharded.exit_code == 0, sharded.output
    finally:
        for server in servers:
            server.stop()
    plain, split = json.loads(local.stdout), json.loads(sharded.stdout)
    rows = {row["device"]["name"]: row for row in split["models"]}
    assert set(rows) == {s.device for s in servers}
    for row in rows.values():  # the merged counts, on every device's row
        assert row["accuracy"] == plain["models"][0]["accuracy"]
        assert row["agreement"] == plain["models"][0]["agreement"]
    lanes = split["evaluation"]["lanes"]
    assert [lane["device"] for lane in lanes] == [s.device for s in servers]
    assert [lane["chunks"] for lane in lanes] == [12, 13] and sum(lane["samples"] for lane in lanes) == 400
    assert all(lane["images_per_s"] > 0 for lane in lanes)
    first, second = chunk_parts(tmp_path / "local"), chunk_parts(tmp_path / "sharded")
    assert set(first) == set(second) and all(np.array_equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_dropped_device_mid_shard_is_finished_by_the_next_run(converted_small, tmp_path):
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    rng = np.random.default_rng(8)
    data = tmp_path / "big.npz"
    np.savez(data, x=rng.integers(0, 256, size=(3000, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 4, 3000))
    common = [model, "--data", data, "--runs", 5, "--chunk-size", 2]
    plain = profile(*common, "--resume", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    first_server, dropping = [make_server(tmp_path / f"sshd{i}").start() for i in range(2)]
    state = tmp_path / "state"
    results = {}
    config = pair_config(tmp_path / "ssh_config", [first_server, dropping])

    def run():
        results["first"] = profile(*common, "--resume", state, "--shard",
                                   *device_args(config, tmp_path / "cache", first_server, dropping))

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    # The second device's shard is chunks 750..1499: cut it off after it has finished a few.
    while time.monotonic() < deadline:
        if len([p for p in state.glob("model0.*.npz") if int(p.name.split(".")[1]) >= 750]) >= 5:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the second device never finished a chunk")
    cut_connections(dropping)
    worker.join(timeout=300)
    first = results["first"]
    assert first.exit_code == 3, first.output
    error = first.stderr.strip()
    assert "\n" not in error and dropping.device in error and "--resume" in error, error
    done = {int(p.name.split(".")[1]) for p in state.glob("model0.*.npz")}
    assert any(k >= 750 for k in done) and not all(k in done for k in range(750, 1500))
    # The next run, with the device back (a new address): only the missing chunks are evaluated.
    back = make_server(tmp_path / "sshd-back").start()
    try:
        config = pair_config(tmp_path / "ssh_config2", [first_server, back])
        second = profile(*common, "--resume", state, "--shard", *device_args(config, tmp_path / "cache", first_server,
                                                                             back))
    finally:
        first_server.stop()
        back.stop()
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    lanes = report["evaluation"]["lanes"]
    assert sum(lane["chunks_done_before"] for lane in lanes) == len(done)
    assert sum(lane["samples"] for lane in lanes) == sum(2 for _ in range(1500)) - 2 * len(done)
    assert report["models"][0]["accuracy"] == json.loads(plain.stdout)["models"][0]["accuracy"]
    a, b = chunk_parts(tmp_path / "plain"), chunk_parts(state)
    assert all(np.array_equal(a[k], b[k]) for k in a)
