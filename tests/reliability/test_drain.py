"""Drain under load: SIGTERM while many slow requests are in flight and traffic keeps
coming. docs/operations.md: /healthz turns 503 for shutdown_delay while requests are still
served, then the listeners close and every request in flight is answered within
drain_timeout; the process exits 0."""
import signal
import threading
import time
import urllib.error
import urllib.request

from conftest import Traffic, http_get


def test_drain_under_load_answers_every_request_in_flight(flashgate, origin):
    fg = flashgate(main_extra="shutdown_delay 1s;\ndrain_timeout 10s;")
    n = 40
    results = [None] * n

    def slow(i):
        try:
            results[i] = http_get(fg.port, f"/delay?ms={1500 + 20 * i}", timeout=15)[0]
        except Exception as e:  # the assertion shows it
            results[i] = repr(e)

    traffic = Traffic(fg.port, ["/echo", "/size?bytes=5000"], threads=2, new_conn_every=0)
    time.sleep(0.3)
    threads = [threading.Thread(target=slow, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while fg.stats()["downstream"]["connections_active"] < n and time.time() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    fg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/healthz", timeout=2)
        assert False, "healthz should say 503 while draining"
    except urllib.error.HTTPError as e:
        assert e.code == 503
    # The keep-alive traffic is still served during shutdown_delay.
    served = traffic.ok
    time.sleep(0.5)
    assert traffic.ok > served
    for t in threads:
        t.join(20)
    code = fg.proc.wait(15)
    took = time.monotonic() - t0
    traffic.stop()
    print(f"\ndrain: {n} slow requests in flight, answers {sorted(set(map(str, results)))}, "
          f"exit {code} after {took:.1f} s; {traffic.ok} keep-alive requests meanwhile")
    assert results == [200] * n
    assert code == 0
    assert took < 10, "drain_timeout was 10s and the slowest request 2.3 s"
    # The keep-alive traffic ends with closes at the end of the drain, never a wrong answer.
    assert all(not isinstance(st, int) for _, st in traffic.failures), traffic.failures
