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


# ---- logs with `user` and logrotate ---------------------------------------------------
#
# The way the package runs it: logs under a directory of the service user, rotated by
# the packaged /etc/logrotate.d/flashgate (rename, `create`, `su`, delaycompress), whose
# postrotate sends SIGUSR1. As root (CI), flashgate is started as root with `user nobody`
# (it opens its logs before dropping privileges) and logrotate rotates as nobody; without
# root, both run as ourselves and the `su`/owner parts are left out.

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@pytest.fixture
def log_dir():
    """A log directory for the service user, inside one every user can reach (pytest's
    tmp_path is private to root)."""
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="fg-logs-")
    os.chmod(top, 0o755)
    d = os.path.join(top, "log")
    os.mkdir(d, 0o750)
    if os.geteuid() == 0:
        import pwd
        os.chown(d, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    yield d
    shutil.rmtree(top, ignore_errors=True)


def packaged_logrotate(tmp_path, logs, pid):
    """packaging/logrotate/flashgate aimed at this test: its paths, its user, and its
    postrotate (`systemctl kill -s USR1` on the unit's main process) as a kill -USR1 of
    our process."""
    import grp
    import pwd
    with open(os.path.join(TOP, "packaging", "logrotate", "flashgate")) as f:
        text = f.read()
    assert "/var/log/flashgate/*.log {" in text and "su flashgate flashgate" in text
    assert "create 0640 flashgate flashgate" in text
    post = "/usr/bin/systemctl kill -s USR1 --kill-whom=main flashgate.service"
    assert post in text
    text = text.replace("/var/log/flashgate", logs).replace(post, f"/bin/kill -USR1 {pid}")
    if os.geteuid() == 0:
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        text = text.replace(" flashgate flashgate", f" nobody {group}")
    else:  # `su` needs root; files are ours anyway
        text = text.replace("    su flashgate flashgate\n", "")
        text = text.replace("create 0640 flashgate flashgate", "create 0640")
    path = tmp_path / "logrotate.conf"
    path.write_text(text)
    return str(path)


def logrotate(conf, state):
    import subprocess
    r = subprocess.run(["logrotate", "-f", "-s", state, conf], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr


def lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def logging_flashgate(flashgate, logs):
    user = "user nobody;\n" if os.geteuid() == 0 else ""
    return flashgate(main_extra=f"{user}error_log {logs}/error.log info;",
                     server_extra=f"    access_log {logs}/access.log;")


def test_packaged_logrotate_with_user(flashgate, tmp_path, log_dir):
    import shutil
    if shutil.which("logrotate") is None:
        pytest.fail("logrotate is not installed (scripts/deps.sh installs it)")
    err, acc = f"{log_dir}/error.log", f"{log_dir}/access.log"
    fg = logging_flashgate(flashgate, log_dir)
    conf = packaged_logrotate(tmp_path, log_dir, fg.proc.pid)
    state = str(tmp_path / "logrotate.state")
    if os.geteuid() == 0:  # the files it made as root belong to the user it runs as
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        assert os.stat(err).st_uid == nobody and os.stat(acc).st_uid == nobody
    for day in (1, 2, 3):  # three rotations: .1, then .2.gz (delaycompress), .3.gz
        get(fg.port, f"/echo?day={day}")
        assert wait_for(lambda: any(f"day={day}" in l for l in lines(acc))), lines(acc)
        logrotate(conf, state)
        assert wait_for(lambda: "log files reopened" in "".join(lines(err))), lines(err)
        get(fg.port, f"/echo?after={day}")
        assert wait_for(lambda: any(f"after={day}" in l for l in lines(acc))), lines(acc)
        # the new lines are in the new files, the rotated ones keep what they had (the
        # error log moved by this rotation: the notice of the one before, if any)
        reopened = [l for l in lines(err) if "log files reopened" in l]
        assert len(reopened) == 1, lines(err)
        assert len([l for l in lines(err + ".1") if "log files reopened" in l]) == (day > 1)
        assert any(f"day={day}" in l for l in lines(acc + ".1"))
        assert not any(f"after={day}" in l for l in lines(acc + ".1"))
    assert os.path.exists(acc + ".2.gz") and os.path.exists(err + ".3.gz")
    text = "\n".join(lines(err)) + fg.errors()
    assert "Permission denied" not in text and "dropped" not in text, text


def test_reopen_that_fails_says_so_and_keeps_writing(flashgate, log_dir):
    """A log that cannot be opened again (here: its directory made read-only after the
    start) is reported, and lines keep going to the file flashgate has, instead of a
    "log files reopened" while they go nowhere anyone looks."""
    err, acc = f"{log_dir}/error.log", f"{log_dir}/access.log"
    fg = logging_flashgate(flashgate, log_dir)
    get(fg.port, "/echo?before")
    assert wait_for(lambda: lines(acc))
    os.rename(err, err + ".1")
    os.rename(acc, acc + ".1")
    os.chmod(log_dir, 0o550)
    try:
        fg.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "log files reopened, except" in "".join(lines(err + ".1")))
        text = "\n".join(lines(err + ".1"))
        assert f"error log {err}: cannot reopen: Permission denied; still writing to the " \
            "file it had open" in text, text
        assert f"access log {acc}: cannot reopen: Permission denied" in text, text
        assert "[notice] log files reopened" not in text
        get(fg.port, "/echo?after")
        assert wait_for(lambda: any("after" in l for l in lines(acc + ".1")))
    finally:
        os.chmod(log_dir, 0o750)


def test_reload_naming_a_log_file_it_cannot_open_is_refused(flashgate, tmp_path):
    """Access log files are opened by the reload that names them first: one that cannot
    be opened (here: its directory does not exist) refuses the reload with its line, and
    the old config (and its log) stays."""
    acc = tmp_path / "access.log"
    fg = flashgate(server_extra=f"    access_log {acc};")
    missing = tmp_path / "no-such-dir"
    text = fg.text.replace(f"access_log {acc};", f"access_log {missing}/access.log;")
    assert text != fg.text
    fg.write_conf(text)
    fg.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in fg.errors())
    line = [i for i, l in enumerate(text.splitlines(), 1) if "access_log" in l][0]
    assert f"{fg.conf}:{line}: access_log {missing}/access.log: cannot open: No such file or " \
        "directory" in fg.errors(), fg.errors()
    assert fg.stats()["generation"] == 1
    get(fg.port, "/echo?still")
    assert wait_for(lambda: acc.exists() and "still" in acc.read_text())
