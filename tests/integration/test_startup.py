"""Start-up: one flashgate per pid file and per port, what `-t` catches before a start
fails, `-T` output that `-t` accepts, and what a reload does with addresses and with
directives that only a restart changes."""
import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import flashgate_bin, free_port, get

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, "..", "..")


def until(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def run(*args, timeout=10):
    return subprocess.run([flashgate_bin(), *args], capture_output=True, text=True,
                          timeout=timeout)


def conf_line(text, pattern):
    """1-based number of the first line of text that contains pattern."""
    for i, line in enumerate(text.splitlines(), 1):
        if pattern in line:
            return i
    raise AssertionError(f"no line with {pattern!r}")


def served_by(port, n):
    """How many of n requests to port are answered 200 (all, when no second process
    took a share of the port's connections and went away)."""
    return sum(1 for _ in range(n) if get(port, "/echo")[0] == 200)


# ---- a second instance ---------------------------------------------------------------


def test_second_instance_with_same_config_is_refused(flashgate, tmp_path):
    pid_file = tmp_path / "flashgate.pid"
    fg = flashgate(main_extra=f"pid_file {pid_file};")
    assert until(lambda: pid_file.exists() and pid_file.read_text().strip(), 3.0)
    assert pid_file.read_text() == f"{fg.proc.pid}\n"
    r = run("-c", fg.conf)
    assert r.returncode == 1
    line = conf_line(fg.text, "pid_file")
    assert re.search(rf"{re.escape(fg.conf)}:{line}: pid_file {re.escape(str(pid_file))} is "
                     rf"locked by process {fg.proc.pid}: another flashgate is running", r.stderr), \
        r.stderr
    # the running one's file is untouched and it still serves everything
    assert pid_file.read_text() == f"{fg.proc.pid}\n"
    assert fg.proc.poll() is None
    assert served_by(fg.port, 20) == 20


def second_config(tmp_path, listen, admin):
    text = f"""workers 1;
pid_file {tmp_path}/second.pid;
admin {{ listen 127.0.0.1:{admin}; }}
upstream app {{ server 127.0.0.1:1; }}
server {{
    listen 127.0.0.1:{listen};
    route / {{ upstream app; }}
}}
"""
    path = tmp_path / "second.conf"
    path.write_text(text)
    return str(path), text


@pytest.mark.parametrize("case", ["traffic", "admin-on-traffic", "traffic-on-admin"])
def test_other_config_on_a_held_port_is_refused(flashgate, tmp_path, case):
    """Another config whose addresses collide with a running flashgate's, in any order:
    its traffic port on ours (SO_REUSEPORT would have shared it), its admin listener on
    our traffic port, its traffic port on our admin listener. Refused before it binds
    anything; the first one keeps all the traffic."""
    fg = flashgate()
    listen, admin = {
        "traffic": (fg.port, free_port()),
        "admin-on-traffic": (free_port(), fg.port),
        "traffic-on-admin": (fg.admin, free_port()),
    }[case]
    path, text = second_config(tmp_path, listen, admin)
    r = run("-c", path)
    assert r.returncode == 1, r.stderr
    what = "admin listen" if case == "admin-on-traffic" else "listen"
    held = admin if case == "admin-on-traffic" else listen
    line = conf_line(text, f"listen 127.0.0.1:{held}")
    assert re.search(rf"{re.escape(path)}:{line}: {what} 127\.0\.0\.1:{held}: the address is in "
                     r"use by another process", r.stderr), r.stderr
    assert not (tmp_path / "second.pid").exists()  # a refused start leaves no pid file
    assert fg.proc.poll() is None
    assert served_by(fg.port, 20) == 20


def test_reload_onto_a_port_another_process_holds_is_refused_with_its_line(flashgate):
    """A new listen address that another process holds with SO_REUSEPORT (as another
    flashgate does) used to be joined on reload; one held without it was refused without
    a file:line. Both are refused, with the line of the listen directive."""
    fg = flashgate()
    for reuseport in (True, False):
        other = socket.socket()
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        held = other.getsockname()[1]
        try:
            text = fg.text.replace(f"    listen 127.0.0.1:{fg.port};",
                                   f"    listen 127.0.0.1:{fg.port};\n    listen 127.0.0.1:{held};")
            fg.write_conf(text)
            mark = fg.errors().count("reload refused")
            fg.proc.send_signal(signal.SIGHUP)
            assert until(lambda: fg.errors().count("reload refused") > mark, 5.0), fg.errors()
            line = conf_line(text, f"listen 127.0.0.1:{held}")
            assert re.search(rf"{re.escape(fg.conf)}:{line}: reload refused: listen "
                             rf"127\.0\.0\.1:{held}: the address is in use by another process",
                             fg.errors()), fg.errors()
            assert fg.stats()["generation"] == 1
        finally:
            other.close()
    fg.write_conf(fg.text)


# ---- what -t catches ---------------------------------------------------------------------


def base_config(port, admin, extra_main="", extra_server=""):
    return f"""workers 1;
{extra_main}
admin {{ listen 127.0.0.1:{admin}; }}
upstream app {{ server 127.0.0.1:1; }}
server {{
    listen 127.0.0.1:{port};
{extra_server}
    route / {{ upstream app; }}
}}
"""


def test_check_refuses_a_user_that_does_not_exist(tmp_path):
    path = tmp_path / "f.conf"
    text = base_config(free_port(), free_port(), "user no-such-user-fg;")
    path.write_text(text)
    r = run("-t", "-c", str(path))
    assert r.returncode == 1
    assert f"{path}:2: user 'no-such-user-fg' does not exist" in r.stderr, r.stderr
    # and the start says the same, with its line
    r = run("-c", str(path))
    assert r.returncode == 1
    assert f"{path}:2: user 'no-such-user-fg' does not exist" in r.stderr, r.stderr


@pytest.fixture
def shared_dir():
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="fg-startup-")
    os.chmod(d, 0o755)
    yield d
    subprocess.run(["rm", "-rf", d], check=False)


def test_check_refuses_log_files_the_user_cannot_write(tmp_path, shared_dir):
    """error_log and access_log are opened again on SIGUSR1 (logrotate) by the user the
    process runs as: -t says when that user cannot create or write them."""
    logs = os.path.join(shared_dir, "logs")
    os.mkdir(logs, 0o755)
    if os.geteuid() == 0:
        main = "user nobody;\n"
        who = "user nobody"
    else:  # not root: the files are written as ourselves; a directory we cannot write
        os.chmod(logs, 0o555)
        main = ""
        who = "user " + pwd.getpwuid(os.geteuid()).pw_name
    text = base_config(free_port(), free_port(),
                       main + f"error_log {logs}/error.log;",
                       f"    access_log {logs}/access.log;")
    path = tmp_path / "f.conf"
    path.write_text(text)
    r = run("-t", "-c", str(path))
    assert r.returncode == 1, r.stderr
    el, al = conf_line(text, "error_log"), conf_line(text, "access_log")
    assert f"{path}:{el}: error_log {logs}/error.log: {who} cannot create it: Permission denied" \
        in r.stderr, r.stderr
    assert f"{path}:{al}: access_log {logs}/access.log: {who} cannot create it: Permission " \
        "denied" in r.stderr, r.stderr
    if os.geteuid() == 0:
        # the directory given to the user: fine; an existing file it cannot write: not
        os.chown(logs, pwd.getpwnam("nobody").pw_uid, -1)
        r = run("-t", "-c", str(path))
        assert r.returncode == 0, r.stderr
        with open(f"{logs}/access.log", "w"):
            pass  # root's, 0644
        r = run("-t", "-c", str(path))
        assert r.returncode == 1
        assert f"{path}:{al}: access_log {logs}/access.log: user nobody cannot write it: " \
            "Permission denied" in r.stderr, r.stderr


# ---- -T prints what -t accepts --------------------------------------------------------------


def directives_written(text):
    """The first word of every statement: what the operator wrote."""
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        for part in re.split(r"[{};]", line):
            words = part.split()
            if words:
                names.add(words[0])
    return names


def round_trip(tmp_path, conf):
    """-T of conf, checked by -t, printed again by -T: the same, and nothing dropped."""
    r = run("-T", "-c", conf)
    assert r.returncode == 0, r.stderr
    one = tmp_path / "dump1.conf"
    one.write_text(r.stdout)
    r1 = run("-t", "-c", str(one))
    assert r1.returncode == 0, r1.stderr + r.stdout
    r2 = run("-T", "-c", str(one))
    assert r2.stdout.split("\n", 1)[1] == r.stdout.split("\n", 1)[1]
    with open(conf) as f:
        written = directives_written(f.read())
    missing = written - directives_written(r.stdout)
    assert not missing, f"-T drops {missing}:\n{r.stdout}"
    return r.stdout


def test_dump_of_the_shipped_config_is_accepted_and_complete(tmp_path):
    out = round_trip(tmp_path, os.path.join(TOP, "conf", "flashgate.conf"))
    assert "    route /flashgate/healthz {\n        health on;\n" in out


def test_dump_of_a_running_config_is_accepted_and_complete(flashgate, tmp_path):
    fg = flashgate(main_extra="shutdown_delay 2s;\ncache main { memory 8m; }",
                   server_extra="    access_log stderr sample=0.5;",
                   routes='    route /down { return 503 "no\\n"; }\n'
                          '    route / { upstream app; cache main; compress gzip; }',
                   upstream_extra="    keepalive 8;")
    round_trip(tmp_path, fg.conf)
    # /config shows the same as -T (past the first line)
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/config", timeout=5) as r:
        live = r.read().decode()
    assert "        health on;\n" in live


# ---- a reload and what only a restart changes ------------------------------------------------


def admin_config(fg):
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/config", timeout=5) as r:
        return r.read().decode()


def test_reload_that_changes_restart_only_directives_warns_and_config_shows_what_runs(flashgate):
    fg = flashgate()
    new_admin = free_port()
    text = fg.text.replace("workers 1;", "workers 3;").replace(
        f"listen 127.0.0.1:{fg.admin};", f"listen 127.0.0.1:{new_admin};")
    text = text.replace("    route /flashgate/healthz", '    route /v { return 200 "two\\n"; }\n'
                        "    route /flashgate/healthz")
    fg.write_conf(text)
    fg.proc.send_signal(signal.SIGHUP)
    assert until(lambda: fg.stats()["generation"] == 2, 5.0)
    assert get(fg.port, "/v")[2] == b"two\n"  # the rest of the reload applies
    errors = fg.errors()
    wl, al = conf_line(text, "workers 3"), conf_line(text, f"listen 127.0.0.1:{new_admin}")
    assert re.search(rf"\[warn\] {re.escape(fg.conf)}:{wl}: workers 3: takes effect only at a "
                     r"restart; 1 keep running", errors), errors
    assert re.search(rf"\[warn\] {re.escape(fg.conf)}:{al}: admin listen 127\.0\.0\.1:{new_admin}: "
                     rf"takes effect only at a restart; the admin listener stays on "
                     rf"127\.0\.0\.1:{fg.admin}", errors), errors
    live = admin_config(fg)
    assert "workers 1;\n" in live and "workers 3" not in live
    assert f"    listen 127.0.0.1:{fg.admin};\n" in live and str(new_admin) not in live
    assert fg.stats()["workers"] == 1
    assert '"two\\n"' in live
