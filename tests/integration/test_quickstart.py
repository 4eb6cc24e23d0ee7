"""The README's quick-start walkthrough, run as written: the demo shop (node) behind
flashgate with the shipped conf/flashgate.conf, every curl line of the block after "In
another terminal", and what its comment says the answer is labelled (X-Cache). Ports are
moved to free ones; nothing else is changed."""
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import flashgate_bin, free_port, wait_port

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
LABELS = ("MISS", "HIT", "STALE", "REVALIDATED", "PASS")


def walkthrough():
    """The commands of the README's walkthrough block, with their comments."""
    with open(os.path.join(TOP, "README.md")) as f:
        text = f.read()
    m = re.search(r"In another terminal:\n\n```sh\n(.*?)```", text, re.S)
    assert m, "README.md has no quick-start walkthrough block"
    out = []
    for line in m.group(1).splitlines():
        cmd, _, comment = line.partition("#")
        if cmd.strip():
            out.append((cmd.strip(), comment.strip()))
    return out


def labels_claimed(comment):
    """The X-Cache labels a comment says the command shows, in order: one run each."""
    return [w for w in re.findall(r"[A-Z]+", comment) if w in LABELS]


@pytest.fixture
def quickstart(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (scripts/deps.sh installs it; the demo app needs it)")
    app_port, port, admin = free_port(), free_port(), free_port()
    with open(os.path.join(TOP, "conf", "flashgate.conf")) as f:
        conf = f.read()
    for old, new in (("listen 0.0.0.0:8080", f"listen 127.0.0.1:{port}"),
                     ("listen 127.0.0.1:9901", f"listen 127.0.0.1:{admin}"),
                     ("server 127.0.0.1:3000", f"server 127.0.0.1:{app_port}")):
        assert old in conf
        conf = conf.replace(old, new)
    path = tmp_path / "flashgate.conf"
    path.write_text(conf)
    log = open(tmp_path / "quickstart.log", "w")
    app = subprocess.Popen([node, os.path.join(TOP, "demo", "app.js")], stdout=log,
                           stderr=subprocess.STDOUT, env=dict(os.environ, PORT=str(app_port)))
    fg = None
    try:
        wait_port(app_port, timeout=10)
        fg = subprocess.Popen([flashgate_bin(), "-c", str(path)], stdout=log,
                              stderr=subprocess.STDOUT)
        wait_port(port)
        wait_port(admin)
        yield port, admin
    finally:
        if fg is not None:
            fg.send_signal(signal.SIGINT)  # no shutdown_delay
            fg.wait(10)
        app.kill()
        app.wait(5)
        log.close()


def test_readme_walkthrough_runs_as_written(quickstart):
    port, admin = quickstart
    steps = walkthrough()
    assert len(steps) >= 4
    claimed = 0
    for cmd, comment in steps:
        cmd = cmd.replace("localhost:8080", f"localhost:{port}").replace(
            "localhost:9901", f"localhost:{admin}")
        for label in labels_claimed(comment) or [None]:
            r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                               text=True, timeout=10)
            assert r.returncode == 0, f"{cmd}: {r.stderr}"
            if label is not None:
                claimed += 1
                got = re.findall(r"X-Cache: (\w+)", r.stdout)
                assert got == [label], f"{cmd!r}: the README says X-Cache: {label}, got {got}"
    assert claimed >= 3  # PASS, MISS, HIT
