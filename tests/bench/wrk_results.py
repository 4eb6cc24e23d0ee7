"""wrk results for the bench scripts (run.sh, offload.sh): one JSON row per wrk run, then
a table of medians with ratios.

  wrk_results.py row NAME ROUND TICKS HZ WRK_OUTPUT [UPCONN]  -> one JSON line on stdout
  wrk_results.py table RESULTS.jsonl [A:B ...]        -> medians; ratios of each name to the
                                                         first, or of each A to B given
  wrk_results.py ratio RESULTS.jsonl A B              -> the ratio line of A to B alone

TICKS are the CPU clock ticks the measured processes used during the run (utime+stime
from /proc/PID/stat), HZ the clock's rate (getconf CLK_TCK). UPCONN, when given, is the
number of connections the proxy opened to its upstream during the run (a warm pool: 0).
"""
import json
import re
import statistics
import sys

KEYS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")


def latency_ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]


def row(name, rnd, ticks, hz, path, upconn=None):
    out = open(path).read()
    if "Requests/sec" not in out or "99%" not in out:
        sys.exit(f"bench: wrk against {name} failed:\n{out}")
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"proxy": name, "round": int(rnd), "requests": reqs,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": latency_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99_ms": latency_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "cpu_us_per_req": int(ticks) / int(hz) * 1e6 / max(reqs, 1),
            "non_2xx": int(errs.group(1)) if errs else 0,
            "upconn": int(upconn) if upconn is not None else None}


def medians(rows):
    names = list(dict.fromkeys(r["proxy"] for r in rows))
    med = {}
    for p in names:
        rs = [r for r in rows if r["proxy"] == p]
        med[p] = {k: statistics.median(r[k] for r in rs) for k in KEYS}
        med[p]["non_2xx"] = sum(r["non_2xx"] for r in rs)
        ups = [r["upconn"] for r in rs if r.get("upconn") is not None]
        med[p]["upconn"] = statistics.median(ups) if ups else None
    return names, med


def ratio_line(med, a, b):
    x, y = med[a], med[b]
    return (f"{'ratio':<16} {x['rps'] / y['rps']:>7.2f}x {'':>8} {x['p99_ms'] / y['p99_ms']:>7.2f}x "
            f"{x['cpu_us_per_req'] / y['cpu_us_per_req']:>10.2f}x   ({a} / {b})")


def table(path, pairs):
    rows = [json.loads(line) for line in open(path)]
    names, med = medians(rows)
    print(f"{'proxy':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'non-2xx':>8}"
          f" {'upconn':>7}")
    for p, m in med.items():
        up = "-" if m["upconn"] is None else f"{m['upconn']:.0f}"
        print(f"{p:<16} {m['rps']:>8.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
              f"{m['cpu_us_per_req']:>11.1f} {m['non_2xx']:>8} {up:>7}")
    for a, b in pairs or [(p, names[0]) for p in names[1:]]:
        print(ratio_line(med, a, b))
    print("rounds:", " ".join(f"{r['proxy']}{r['round']}={r['rps']:.0f}" for r in rows))


if __name__ == "__main__":
    if len(sys.argv) in (7, 8) and sys.argv[1] == "row":
        print(json.dumps(row(*sys.argv[2:])))
    elif len(sys.argv) == 5 and sys.argv[1] == "ratio":
        print(ratio_line(medians([json.loads(line) for line in open(sys.argv[2])])[1],
                         sys.argv[3], sys.argv[4]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2], [tuple(p.split(":", 1)) for p in sys.argv[3:]])
    else:
        sys.exit(__doc__)
