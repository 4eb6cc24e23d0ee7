"""Operations: admin token, log reopen for logrotate, privilege drop."""
import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from conftest import get


def admin_get(fg, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_admin_token(flashgate):
    fg = flashgate(admin_extra='token "s3cret-token";')
    assert admin_get(fg, "/stats")[0] == 401
    assert admin_get(fg, "/stats", "wrong")[0] == 401
    status, body = admin_get(fg, "/stats", "s3cret-token")
    assert status == 200 and '"downstream"' in body
    assert admin_get(fg, "/healthz")[0] == 200  # health checkers carry no token
    status, body = admin_get(fg, "/config", "s3cret-token")
    assert status == 200 and "s3cret-token" not in body and "********" in body


def wait_for(pred, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_sigusr1_reopens_logs(flashgate, tmp_path):
    err = tmp_path / "fg-error.log"
    acc = tmp_path / "fg-access.log"
    fg = flashgate(main_extra=f"error_log {err} info;", server_extra=f"    access_log {acc};")
    get(fg.port, "/echo")
    assert wait_for(lambda: acc.exists() and acc.read_text().count("\n") == 1)
    os.rename(acc, tmp_path / "fg-access.log.1")  # what logrotate does
    os.rename(err, tmp_path / "fg-error.log.1")
    fg.proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: err.exists() and "log files reopened" in err.read_text())
    get(fg.port, "/echo")
    assert wait_for(lambda: acc.exists() and acc.read_text().count("\n") == 1)
    assert (tmp_path / "fg-access.log.1").read_text().count("\n") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")
def test_privilege_drop(flashgate):
    import pwd
    fg = flashgate(main_extra="user nobody;")
    assert get(fg.port, "/echo")[0] == 200  # served (only once the workers run)
    nobody = pwd.getpwnam("nobody").pw_uid
    with open(f"/proc/{fg.proc.pid}/status") as f:
        uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
    assert all(int(u) == nobody for u in uids)  # real, effective, saved, fs
    for task in os.listdir(f"/proc/{fg.proc.pid}/task"):  # every thread
        with open(f"/proc/{fg.proc.pid}/task/{task}/status") as f:
            assert [l for l in f if l.startswith("Uid:")][0].split()[1:] == [str(nobody)] * 4
