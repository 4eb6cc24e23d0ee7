"""A reload storm under traffic: SIGHUP after SIGHUP, valid and invalid configs
interleaved, while threads keep sending requests (keep-alive and a new connection per
request) to a proxied route, a cached route and a `return` route.

docs/operations.md: a reload takes the new config for new requests without dropping a
connection; a config with an error is refused with `file:line: what is wrong` and the
old one keeps running. Zero failed requests is the promise.
"""
import re
import signal
import time

from conftest import Traffic, http_get, wait_for

BAD = [  # each an error the check must name with its line
    ("bogus_directive 1;", r"unknown directive 'bogus_directive'"),
    ("    read_timeout 75x;", r"75x"),
    ("route /x { upstream nowhere; }", r"'nowhere'"),
]


def config(fg, gen):
    return fg.text.replace('"gen 0\\n"', f'"gen {gen}\\n"')


def test_reload_storm_valid_and_invalid_zero_failed_requests(flashgate, origin):
    routes = ('    route /v { return 200 "gen 0\\n"; }\n'
              '    route /c/ { upstream app; cache main; }\n'
              '    route / { upstream app; }')
    fg = flashgate(main_extra="cache main { memory 16m; max_object 1m; }", routes=routes)
    traffic = Traffic(fg.port, ["/echo", "/c/page?cc=max-age=60", "/v", "/size?bytes=20000"],
                      threads=4)
    refused = 0
    gen = 1
    try:
        time.sleep(0.5)
        for i in range(24):
            if i % 2 == 0:  # valid: a new generation, the new /v body
                fg.write_conf(config(fg, i + 1))
                fg.proc.send_signal(signal.SIGHUP)
                gen += 1
                wait_for(lambda: fg.stats()["generation"] == gen, 10, f"generation {gen}")
                assert http_get(fg.port, "/v")[2] == f"gen {i + 1}\n".encode()
            else:  # invalid: refused with file:line, the last good one keeps running
                line, msg = BAD[(i // 2) % len(BAD)]
                text = config(fg, 999)
                if line.startswith("    "):  # inside the upstream block
                    text = text.replace("upstream app {\n", "upstream app {\n" + line + "\n")
                elif line.startswith("route"):
                    text = text.replace("    route / {", "    " + line + "\n    route / {")
                else:
                    text += "\n" + line + "\n"
                fg.write_conf(text)
                fg.proc.send_signal(signal.SIGHUP)
                refused += 1
                wait_for(lambda: fg.errors().count("reload refused") >= refused, 10,
                         f"reload {i} refused")
                assert re.search(r"flashgate\.conf:\d+: .*" + msg, fg.errors()), msg
                assert fg.stats()["generation"] == gen
            time.sleep(0.15)
        # Then a burst: SIGHUPs faster than a reload takes, on a valid config.
        fg.write_conf(config(fg, 100))
        for _ in range(6):
            fg.proc.send_signal(signal.SIGHUP)
            time.sleep(0.02)
        wait_for(lambda: http_get(fg.port, "/v")[2] == b"gen 100\n", 10, "the burst applied")
        time.sleep(0.5)
    finally:
        traffic.stop()
    assert fg.proc.poll() is None, "flashgate exited during the storm"
    print(f"\nreload storm: {traffic.ok} requests answered, {len(traffic.failures)} failed, "
          f"{refused} configs refused, generation {fg.stats()['generation']}")
    assert traffic.failures == []
    assert traffic.ok > 200
    assert fg.errors().count("reload refused") == refused
