"""/metrics: a strict check of the Prometheus text exposition format (0.0.4), run against a
flashgate with every feature on (a cache, a local limit, a warm-up) so that every metric
family is present and has moved.

The validator is written here (stdlib only) and tested on its own first, on texts that are
broken on purpose, so that a pass against the real output means something.

Format reference: https://prometheus.io/docs/instrumenting/exposition_formats/ (text format
0.0.4), with the number syntax Prometheus' own parser takes (Go's ParseFloat, without hex
floats or underscores; ParseInt for timestamps).
"""
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest

from conftest import Conn, get

# ---- the validator ----------------------------------------------------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANKS = " \t"
# Go ParseFloat as Prometheus calls it: decimal only (it refuses "p", "P" and "_"), plus
# Inf/Infinity with an optional sign and NaN, case-insensitively.
DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
INFINITY = re.compile(r"[+-]?(?:inf|infinity)", re.I)
NAN = re.compile(r"nan", re.I)
TIMESTAMP = re.compile(r"[+-]?\d+")
SUFFIXES = {"_bucket": ("histogram",), "_sum": ("histogram", "summary"),
            "_count": ("histogram", "summary")}


class ExpositionError(AssertionError):
    def __init__(self, errors):
        self.errors = errors  # [(line number, reason, line text)]
        shown = "\n".join(f"  line {n}: {why}: {text!r}" for n, why, text in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} exposition format violation(s):\n{shown}{more}")


def go_float(s):
    """The value of s as Prometheus parses it, or None if it does not."""
    if DECIMAL.fullmatch(s):
        v = float(s)
        return None if math.isinf(v) else v  # out of range: ParseFloat fails with ErrRange
    if INFINITY.fullmatch(s):
        return -math.inf if s.startswith("-") else math.inf
    if NAN.fullmatch(s):
        return math.nan
    return None


@dataclass
class Sample:
    name: str
    labels: dict
    value: float
    timestamp: int
    lineno: int
    line: str


@dataclass
class Family:
    name: str
    first_line: int
    type: str = None
    type_line: int = None
    help: str = None
    help_line: int = None
    samples: list = field(default_factory=list)


class _LineError(Exception):
    pass


def _skip_blanks(line, i):
    while i < len(line) and line[i] in BLANKS:
        i += 1
    return i


def _help_text(s):
    """Unescape a HELP docstring: only \\\\ and \\n are escapes."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                raise _LineError("HELP text ends in a lone backslash")
            e = s[i + 1]
            if e not in "\\n":
                raise _LineError(f"invalid escape '\\{e}' in HELP text (only \\\\ and \\n)")
            out.append("\\" if e == "\\" else "\n")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_sample(line):
    """name{label="value",...} value [timestamp] -> (name, labels, value, timestamp)."""
    m = METRIC_NAME.match(line)
    if not m:
        raise _LineError("not a comment and does not start with a valid metric name")
    name, i = m.group(), m.end()
    labels = {}
    j = _skip_blanks(line, i)
    if j < len(line) and line[j] == "{":
        i = j + 1
        while True:
            i = _skip_blanks(line, i)
            if i < len(line) and line[i] == "}":
                i += 1
                break
            m = LABEL_NAME.match(line, i)
            if not m:
                raise _LineError(f"invalid label name at column {i + 1}")
            lname, i = m.group(), m.end()
            if lname.startswith("__"):
                raise _LineError(f"label name {lname!r} is reserved (starts with __)")
            if lname in labels:
                raise _LineError(f"duplicate label name {lname!r} in one sample")
            i = _skip_blanks(line, i)
            if i >= len(line) or line[i] != "=":
                raise _LineError(f"expected '=' after label name {lname!r}")
            i = _skip_blanks(line, i + 1)
            if i >= len(line) or line[i] != '"':
                raise _LineError(f"label value of {lname!r} is not double-quoted")
            i += 1
            val = []
            while True:
                if i >= len(line):
                    raise _LineError(f"unterminated label value of {lname!r}")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\":
                    e = line[i + 1] if i + 1 < len(line) else ""
                    if e not in ('\\', '"', "n") or e == "":
                        raise _LineError(f"invalid escape '\\{e}' in label value of {lname!r} "
                                         '(only \\\\, \\" and \\n)')
                    val.append("\n" if e == "n" else e)
                    i += 2
                    continue
                val.append(c)
                i += 1
            labels[lname] = "".join(val)
            i = _skip_blanks(line, i)
            if i < len(line) and line[i] == ",":
                i += 1
                continue
            if i < len(line) and line[i] == "}":
                i += 1
                break
            raise _LineError(f"expected ',' or '}}' after label {lname!r}")
    if i >= len(line) or line[i] not in BLANKS:
        raise _LineError("expected blank then a value after the metric name/labels")
    rest = line[i:].split()
    if not rest:
        raise _LineError("sample without a value")
    if len(rest) > 2:
        raise _LineError(f"unexpected text after value and timestamp: {' '.join(rest[2:])!r}")
    value = go_float(rest[0])
    if value is None:
        raise _LineError(f"value {rest[0]!r} is not a float (Go ParseFloat syntax)")
    ts = None
    if len(rest) == 2:
        if not TIMESTAMP.fullmatch(rest[1]) or not -2**63 <= int(rest[1]) < 2**63:
            raise _LineError(f"timestamp {rest[1]!r} is not an int64 (milliseconds)")
        ts = int(rest[1])
    return name, labels, value, ts


def parse_exposition(text):
    """Validate text strictly; return {family name: Family}. Raises ExpositionError listing
    every violation with its line number and the line."""
    errors = []
    families = {}
    current = None  # the family whose group of lines we are in
    seen_series = {}  # (sample name, frozenset(labels)) -> line number
    lines = text.split("\n")
    if text and not text.endswith("\n"):
        errors.append((len(lines), "the last line does not end with a line feed", lines[-1]))
    if text.endswith("\n"):
        lines = lines[:-1]

    def enter(name, lineno, line):
        """Open (or stay in) family name's group; a family must be one contiguous group."""
        nonlocal current
        fam = families.get(name)
        if fam is None:
            fam = families[name] = Family(name, lineno)
        elif current != name:
            errors.append((lineno, f"family {name} is not contiguous: its group started at "
                                   f"line {fam.first_line} and was interrupted by family "
                                   f"{current}", line))
        current = name
        return fam

    def family_of(sname, lineno, line):
        for suf, types in SUFFIXES.items():
            base = sname[: -len(suf)]
            if sname.endswith(suf) and base in families and families[base].type:
                if families[base].type in types:
                    return base
                if families[base].type in ("histogram", "summary"):
                    errors.append((lineno, f"sample {sname} does not belong to "
                                           f"{families[base].type} family {base}", line))
        fam = families.get(sname)
        if fam is not None and fam.type == "histogram":
            errors.append((lineno, f"histogram family {sname} has a sample without the "
                                   f"_bucket/_sum/_count suffix", line))
        return sname

    for lineno, line in enumerate(lines, 1):
        if line.endswith("\r"):
            errors.append((lineno, "line ends in CR (lines end in a bare LF)", line))
            continue
        stripped = line.lstrip(BLANKS)
        if stripped == "":
            continue  # empty lines are ignored
        if stripped.startswith("#"):
            m = re.match(r"#([ \t]*)(HELP|TYPE)(?=[ \t]|$)", stripped)
            if not m:
                continue  # a plain comment
            if not m.group(1):
                errors.append((lineno, f"'#{m.group(2)}' without a blank after '#'", line))
                continue
            kind = m.group(2)
            rest = stripped[m.end():]
            if kind == "HELP":
                hm = re.match(r"[ \t]+(\S+)(?:[ \t](.*))?$", rest)
                if not hm or not METRIC_NAME.fullmatch(hm.group(1)):
                    errors.append((lineno, "HELP without a valid metric name", line))
                    continue
                name = hm.group(1)
                try:
                    doc = _help_text(hm.group(2) or "")
                except _LineError as e:
                    errors.append((lineno, str(e), line))
                    doc = hm.group(2)
                fam = enter(name, lineno, line)
                if fam.help is not None:
                    errors.append((lineno, f"second HELP for {name} (first at line "
                                           f"{fam.help_line})", line))
                elif fam.samples:
                    errors.append((lineno, f"HELP for {name} after its first sample (line "
                                           f"{fam.samples[0].lineno})", line))
                fam.help, fam.help_line = doc, fam.help_line or lineno
            else:
                tm = re.match(r"[ \t]+(\S+)[ \t]+(\S+)[ \t]*$", rest)
                if not tm or not METRIC_NAME.fullmatch(tm.group(1)):
                    errors.append((lineno, "TYPE line is not '# TYPE name type'", line))
                    continue
                name, typ = tm.groups()
                if typ not in TYPES:
                    errors.append((lineno, f"unknown metric type {typ!r} (want one of "
                                           f"{', '.join(TYPES)})", line))
                    continue
                for suf, types in SUFFIXES.items():
                    base = name[: -len(suf)]
                    if name.endswith(suf) and base in families and families[base].type in types:
                        errors.append((lineno, f"family {name} collides with the {suf} samples "
                                               f"of {families[base].type} {base}", line))
                if typ in ("histogram", "summary"):
                    for suf, types in SUFFIXES.items():
                        if typ in types and name + suf in families:
                            errors.append((lineno, f"{typ} {name}: a family {name + suf} was "
                                                   f"already seen (line "
                                                   f"{families[name + suf].first_line})", line))
                fam = enter(name, lineno, line)
                if fam.type is not None:
                    errors.append((lineno, f"second TYPE for {name} (first at line "
                                           f"{fam.type_line})", line))
                    continue
                if fam.samples:
                    errors.append((lineno, f"TYPE for {name} after its first sample (line "
                                           f"{fam.samples[0].lineno})", line))
                fam.type, fam.type_line = typ, lineno
            continue
        if stripped is not line:
            errors.append((lineno, "sample line starts with blanks", line))
        try:
            sname, labels, value, ts = _parse_sample(stripped)
        except _LineError as e:
            errors.append((lineno, str(e), line))
            continue
        key = (sname, frozenset(labels.items()))
        if key in seen_series:
            errors.append((lineno, f"duplicate series {sname}{_fmt_labels(labels)} (first at "
                                   f"line {seen_series[key]})", line))
        else:
            seen_series[key] = lineno
        fam = enter(family_of(sname, lineno, line), lineno, line)
        fam.samples.append(Sample(sname, labels, value, ts, lineno, line))

    for fam in families.values():
        if fam.type is None:
            where = fam.samples[0] if fam.samples else None
            errors.append((where.lineno if where else fam.first_line,
                           f"family {fam.name} has no TYPE line",
                           where.line if where else lines[fam.first_line - 1]))
            continue
        check = {"counter": _check_counter, "histogram": _check_histogram,
                 "summary": _check_summary}.get(fam.type)
        if check:
            check(fam, errors, lines)
    if errors:
        errors.sort(key=lambda e: e[0])
        raise ExpositionError(errors)
    return families


def _fmt_labels(labels):
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _check_counter(fam, errors, lines):
    if not fam.name.endswith("_total"):
        errors.append((fam.type_line, f"counter {fam.name} does not end in _total",
                       lines[fam.type_line - 1]))
    for s in fam.samples:
        if not s.value >= 0:  # NaN fails too
            errors.append((s.lineno, f"counter value {s.value} is not a non-negative number",
                           s.line))


def _series(fam, skip_label):
    """Samples grouped by label set without skip_label, in order of first appearance."""
    out = {}
    for s in fam.samples:
        key = frozenset((k, v) for k, v in s.labels.items() if k != skip_label)
        out.setdefault(key, []).append(s)
    return out


def _check_histogram(fam, errors, lines):
    for key, samples in _series(fam, "le").items():
        name = f"{fam.name}{_fmt_labels(dict(key))}"
        buckets = [s for s in samples if s.name == fam.name + "_bucket"]
        sums = [s for s in samples if s.name == fam.name + "_sum"]
        counts = [s for s in samples if s.name == fam.name + "_count"]
        first = samples[0]
        prev_le, prev_v = None, None
        for b in buckets:
            if "le" not in b.labels:
                errors.append((b.lineno, f"{name}: _bucket sample without a le label", b.line))
                continue
            le = go_float(b.labels["le"])
            if le is None or math.isnan(le):
                errors.append((b.lineno, f"{name}: le={b.labels['le']!r} is not a float",
                               b.line))
                continue
            if prev_le is not None and not le > prev_le:
                errors.append((b.lineno, f"{name}: le {b.labels['le']} not above the previous "
                                         f"bucket's {prev_le} (buckets in increasing le order)",
                               b.line))
            if not b.value >= 0:
                errors.append((b.lineno, f"{name}: negative or NaN bucket count", b.line))
            elif prev_v is not None and b.value < prev_v:
                errors.append((b.lineno, f"{name}: bucket count {b.value} below the previous "
                                         f"bucket's {prev_v} (counts are cumulative)", b.line))
            prev_le, prev_v = le, b.value
        for s in sums + counts:
            if "le" in s.labels:
                errors.append((s.lineno, f"{name}: le label on {s.name}", s.line))
        if not buckets:
            errors.append((first.lineno, f"{name}: histogram series without _bucket samples",
                           first.line))
        elif prev_le != math.inf:
            last = buckets[-1]
            errors.append((last.lineno, f"{name}: the last bucket is not le=\"+Inf\"", last.line))
        if len(sums) != 1:
            errors.append((first.lineno, f"{name}: {len(sums)} _sum samples (want 1)",
                           first.line))
        if len(counts) != 1:
            errors.append((first.lineno, f"{name}: {len(counts)} _count samples (want 1)",
                           first.line))
        else:
            c = counts[0]
            if not c.value >= 0:
                errors.append((c.lineno, f"{name}: negative or NaN _count", c.line))
            if buckets and prev_le == math.inf and buckets[-1].value != c.value:
                errors.append((c.lineno, f"{name}: _count {c.value} differs from the le=\"+Inf\" "
                                         f"bucket {buckets[-1].value} (line "
                                         f"{buckets[-1].lineno})", c.line))


def _check_summary(fam, errors, lines):
    for key, samples in _series(fam, "quantile").items():
        name = f"{fam.name}{_fmt_labels(dict(key))}"
        for s in samples:
            if s.name == fam.name:
                q = go_float(s.labels.get("quantile", "x"))
                if q is None or not 0 <= q <= 1:
                    errors.append((s.lineno, f"{name}: summary sample without a quantile "
                                             f"label in [0, 1]", s.line))
            elif "quantile" in s.labels:
                errors.append((s.lineno, f"{name}: quantile label on {s.name}", s.line))
        for suf in ("_sum", "_count"):
            if sum(s.name == fam.name + suf for s in samples) != 1:
                errors.append((samples[0].lineno, f"{name}: want exactly one {suf}",
                               samples[0].line))


def value(families, sample_name, **labels):
    """The value of one sample (its family found through the sample name)."""
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample_name and s.labels == labels:
                return s.value
    raise KeyError(f"no sample {sample_name}{_fmt_labels(labels)}")


# ---- the validator's own tests --------------------------------------------------------------

GOOD = """\
# A free comment, and an empty line below.

# HELP http_requests_total Requests, by "code"; a backslash \\\\ and a\\nnewline.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400",} 3 1395066363000
http_requests_total{method="get",code="200"} 1.5e3
# TYPE temperature gauge
temperature -Inf
# TYPE weird:name_x gauge
weird:name_x{path="C:\\\\dir\\"q\\"\\nend"} NaN
weird:name_x{path="plain"} +Inf
weird:name_x{path="dot"} .5
# HELP rpc_duration_seconds A histogram.
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le="0.05"} 24054
rpc_duration_seconds_bucket{le="0.1"} 33444
rpc_duration_seconds_bucket{le="1"} 33444
rpc_duration_seconds_bucket{le="+Inf"} 144320
rpc_duration_seconds_sum 53423
rpc_duration_seconds_count 144320
rpc_duration_seconds_bucket{job="b",le="1e-3"} 0
rpc_duration_seconds_bucket{job="b",le="+Inf"} 0
rpc_duration_seconds_sum{job="b"} 0
rpc_duration_seconds_count{job="b"} 0
# TYPE rpc_latency summary
rpc_latency{quantile="0.5"} 4773
rpc_latency{quantile="0.99"} 76656
rpc_latency_sum 1.7560473e+07
rpc_latency_count 2693
# TYPE empty_family_total counter
# TYPE other untyped
other{a="1"} 0
"""

HEAD = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n"
HIST = "# TYPE h histogram\n"

BROKEN = {
    # name: (text, line number reported, a piece of the reason)
    "sample_before_type": ("# HELP x_total X.\nx_total 1\n# TYPE x_total counter\n", 3,
                           "TYPE for x_total after its first sample"),
    "sample_never_typed": (HEAD + "b 2\n", 4, "family b has no TYPE"),
    "histogram_sample_before_type": ('h_bucket{le="+Inf"} 1\n' + HIST + "h_sum 1\nh_count 1\n",
                                     1, "family h_bucket has no TYPE"),
    "buckets_not_cumulative": (HIST + 'h_bucket{le="0.1"} 5\nh_bucket{le="1"} 4\n'
                               'h_bucket{le="+Inf"} 5\nh_sum 1\nh_count 5\n', 3,
                               "counts are cumulative"),
    "buckets_not_increasing_le": (HIST + 'h_bucket{le="1"} 1\nh_bucket{le="0.5"} 1\n'
                                  'h_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', 3,
                                  "increasing le order"),
    "no_inf_bucket": (HIST + 'h_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', 2, "not le=\"+Inf\""),
    "inf_bucket_not_count": (HIST + 'h_bucket{le="+Inf"} 3\nh_sum 1\nh_count 4\n', 4,
                             "differs from the le=\"+Inf\" bucket"),
    "histogram_without_sum": (HIST + 'h_bucket{le="+Inf"} 3\nh_count 3\n', 2, "0 _sum"),
    "bucket_without_le": (HIST + 'h_bucket 3\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 3\n', 2,
                          "without a le label"),
    "bare_histogram_sample": (HIST + 'h 3\nh_bucket{le="+Inf"} 3\nh_sum 1\nh_count 3\n', 2,
                              "without the _bucket/_sum/_count suffix"),
    "bucket_in_a_counter": (HEAD + 'a_total_bucket{le="+Inf"} 1\n', 4,
                            "family a_total_bucket has no TYPE"),
    "bucket_in_a_summary": ('# TYPE s summary\ns_bucket{le="1"} 1\ns_sum 1\ns_count 1\n', 2,
                            "does not belong to summary family s"),
    "duplicate_series": (HEAD + "a_total 2\n", 4, "duplicate series"),
    "duplicate_series_label_order": ('# TYPE g gauge\ng{a="1",b="2"} 1\ng{b="2",a="1"} 1\n', 3,
                                     "duplicate series"),
    "duplicate_label_name": ('# TYPE g gauge\ng{a="1",a="2"} 1\n', 2, "duplicate label name"),
    "bad_label_escape": ('# TYPE g gauge\ng{path="C:\\dir"} 1\n', 2, "invalid escape '\\d'"),
    "bad_label_escape_tab": ('# TYPE g gauge\ng{a="x\\t"} 1\n', 2, "invalid escape '\\t'"),
    "unterminated_label_value": ('# TYPE g gauge\ng{a="x} 1\n', 2, "unterminated"),
    "unquoted_label_value": ("# TYPE g gauge\ng{a=x} 1\n", 2, "not double-quoted"),
    "bad_label_name": ('# TYPE g gauge\ng{1a="x"} 1\n', 2, "invalid label name"),
    "reserved_label_name": ('# TYPE g gauge\ng{__name__="x"} 1\n', 2, "reserved"),
    "bad_metric_name": ("# TYPE g gauge\n1g 1\n", 2, "valid metric name"),
    "bad_metric_name_in_type": ("# TYPE g-x gauge\n", 1, "TYPE line is not"),
    "counter_without_total": ("# HELP requests R.\n# TYPE requests counter\nrequests 1\n", 2,
                              "does not end in _total"),
    "negative_counter": ("# TYPE a_total counter\na_total -1\n", 2, "non-negative"),
    "nan_counter": ("# TYPE a_total counter\na_total NaN\n", 2, "non-negative"),
    "bad_value": ("# TYPE g gauge\ng 12abc\n", 2, "not a float"),
    "hex_value": ("# TYPE g gauge\ng 0x1p-2\n", 2, "not a float"),
    "underscore_value": ("# TYPE g gauge\ng 1_000\n", 2, "not a float"),
    "signed_nan": ("# TYPE g gauge\ng -NaN\n", 2, "not a float"),
    "out_of_range_value": ("# TYPE g gauge\ng 1e999\n", 2, "not a float"),
    "no_value": ("# TYPE g gauge\ng\n", 2, "a value"),
    "bad_timestamp": ("# TYPE g gauge\ng 1 1.5\n", 2, "timestamp"),
    "trailing_junk": ("# TYPE g gauge\ng 1 2 3\n", 2, "unexpected text"),
    "value_glued_to_labels": ('# TYPE g gauge\ng{a="1"}1\n', 2, "expected blank"),
    "unknown_type": ("# TYPE g gauges\ng 1\n", 1, "unknown metric type"),
    "type_twice": ("# TYPE g gauge\n# TYPE g gauge\ng 1\n", 2, "second TYPE"),
    "help_twice": ("# HELP g G.\n# HELP g G.\n# TYPE g gauge\ng 1\n", 2, "second HELP"),
    "help_after_sample": ("# TYPE g gauge\ng 1\n# HELP g G.\n", 3, "HELP for g after"),
    "bad_help_escape": ("# HELP g a \\t tab\n# TYPE g gauge\ng 1\n", 1, "invalid escape"),
    "interleaved_families": ('# TYPE g gauge\ng{a="1"} 1\n# TYPE f gauge\nf 1\ng{a="2"} 1\n',
                             5, "not contiguous"),
    "help_of_a_family_elsewhere": ("# HELP g G.\n# TYPE f gauge\nf 1\n# TYPE g gauge\ng 1\n", 4,
                                   "not contiguous"),
    "crlf": ("# TYPE g gauge\r\ng 1\r\n", 1, "CR"),
    "no_final_newline": ("# TYPE g gauge\ng 1", 2, "line feed"),
    "glued_hash_help": ("#HELP g G.\n# TYPE g gauge\ng 1\n", 1, "without a blank"),
}


def test_validator_accepts_a_valid_text():
    fams = parse_exposition(GOOD)
    assert fams["http_requests_total"].type == "counter"
    assert fams["http_requests_total"].help == 'Requests, by "code"; a backslash \\ and a\nnewline.'
    assert value(fams, "http_requests_total", method="post", code="400") == 3
    assert fams["http_requests_total"].samples[0].timestamp == 1395066363000
    assert math.isnan(value(fams, "weird:name_x", path='C:\\dir"q"\nend'))
    assert value(fams, "weird:name_x", path="dot") == 0.5
    assert value(fams, "temperature") == -math.inf
    assert value(fams, "rpc_duration_seconds_count") == 144320
    assert len(fams["rpc_duration_seconds"].samples) == 10
    assert fams["rpc_latency"].type == "summary" and len(fams["rpc_latency"].samples) == 4
    assert fams["empty_family_total"].samples == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validator_rejects(case):
    text, lineno, reason = BROKEN[case]
    with pytest.raises(ExpositionError) as ei:
        parse_exposition(text)
    found = [(n, why) for n, why, _ in ei.value.errors]
    assert any(n == lineno and reason in why for n, why in found), (
        f"want line {lineno} '{reason}', got {found}")
    # the message names the line and shows it
    assert f"line {lineno}: " in str(ei.value)


# ---- against flashgate -------------------------------------------------------------------

FEATURES = ("cache main { memory 8m; max_object 1m; }\n"
            "limit per_ip { rate 100r/s; burst 10; }")
ROUTES = ("    route /api { upstream app; limit per_ip; }\n"
          "    route / { upstream app; cache main; }")

# Every family stats.c writes, with its type.
EXPECTED = {
    "flashgate_uptime_seconds": "gauge",
    "flashgate_config_generation": "gauge",
    "flashgate_draining": "gauge",
    "flashgate_workers": "gauge",
    "flashgate_downstream_connections_active": "gauge",
    "flashgate_downstream_connections_idle": "gauge",
    "flashgate_downstream_connections_total": "counter",
    "flashgate_downstream_requests_total": "counter",
    "flashgate_downstream_requests_active": "gauge",
    "flashgate_downstream_bytes_in_total": "counter",
    "flashgate_downstream_bytes_out_total": "counter",
    "flashgate_downstream_client_aborts_total": "counter",
    "flashgate_downstream_responses_total": "counter",
    "flashgate_downstream_rejected_total": "counter",
    "flashgate_downstream_timeouts_total": "counter",
    "flashgate_request_duration_seconds": "histogram",
    "flashgate_cache_entries": "gauge",
    "flashgate_cache_bytes": "gauge",
    **{f"flashgate_cache_{n}_total": "counter" for n in (
        "hits", "misses", "coalesced", "stale_served", "revalidations", "revalidated_304",
        "not_modified_served", "passes", "hit_for_miss", "lock_timeouts", "stores", "evictions",
        "purged", "invalidations", "too_big", "fill_failed", "ranges_served")},
    "flashgate_tunnels_open": "gauge",
    "flashgate_tunnels_opened_total": "counter",
    "flashgate_tunnels_refused_total": "counter",
    "flashgate_tunnel_bytes_total": "counter",
    "flashgate_tunnels_closed_total": "counter",
    **{f"flashgate_limit_{n}_total": "counter" for n in (
        "allowed", "limited", "failed_closed", "redis_ok", "redis_errors", "redis_timeouts",
        "fallbacks")},
    "flashgate_limit_redis_duration_seconds": "histogram",
    "flashgate_cache_warm_queued": "gauge",
    "flashgate_cache_warm_in_flight": "gauge",
    "flashgate_cache_warm_done_total": "counter",
    "flashgate_cache_warm_failed_total": "counter",
    **{f"flashgate_upstream_{n}": t for n, t in (
        ("requests_total", "counter"), ("connections_active", "gauge"),
        ("connections_idle", "gauge"), ("connects_total", "counter"),
        ("reused_total", "counter"), ("retries_total", "counter"),
        ("errors_connect_total", "counter"), ("errors_timeout_total", "counter"),
        ("errors_reset_total", "counter"), ("errors_bad_response_total", "counter"))},
}


def scrape(fg):
    """GET /metrics; return (families, text), the text validated strictly."""
    with urllib.request.urlopen(f"http://127.0.0.1:{fg.admin}/metrics", timeout=5) as r:
        assert r.status == 200
        ctype = r.headers["Content-Type"]
        raw = r.read()
    assert re.fullmatch(r"text/plain; ?version=0\.0\.4(; ?charset=utf-8)?", ctype), ctype
    text = raw.decode("utf-8")  # strict: label values and HELP must be UTF-8
    return parse_exposition(text), text


def warm(fg, lines):
    req = urllib.request.Request(f"http://127.0.0.1:{fg.admin}/cache/warm",
                                 data="\n".join(lines).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def full(flashgate):
    return flashgate(main_extra=FEATURES, routes=ROUTES)


def test_metrics_at_start_are_valid_and_complete(flashgate):
    fg = full(flashgate)
    fams, _ = scrape(fg)
    for name, typ in EXPECTED.items():
        assert name in fams, f"family {name} missing"
        assert fams[name].type == typ, (name, fams[name].type)
    for fam in fams.values():
        assert fam.help, f"family {fam.name} has no HELP"
        assert fam.samples, f"family {fam.name} has no sample although every feature is on"
    assert value(fams, "flashgate_workers") == 1
    assert value(fams, "flashgate_draining") == 0
    assert value(fams, "flashgate_downstream_requests_total") == 0
    assert value(fams, "flashgate_request_duration_seconds_count") == 0
    assert value(fams, "flashgate_cache_entries", cache="main") == 0
    assert value(fams, "flashgate_limit_allowed_total", limit="per_ip") == 0
    assert value(fams, "flashgate_upstream_requests_total", upstream="app") == 0
    buckets = [s for s in fams["flashgate_request_duration_seconds"].samples
               if s.name.endswith("_bucket")]
    assert len(buckets) >= 2 and buckets[-1].labels == {"le": "+Inf"}


def test_metrics_after_cache_limit_and_warm_traffic(flashgate, origin):
    fg = full(flashgate)
    m0, _ = scrape(fg)
    n = 0  # requests sent to the traffic listener, the warm-up's included

    # the cache: a miss, then a hit
    _, h1, _ = get(fg.port, "/c/m?cc=max-age=60")
    _, h2, _ = get(fg.port, "/c/m?cc=max-age=60")
    n += 2
    assert (h1["x-cache"], h2["x-cache"]) == (["MISS"], ["HIT"])

    # the limit: keep-alive requests faster than 100 r/s until the first 429
    c = Conn(fg.port)
    api = []
    for _ in range(500):
        c.send("GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        s, h, _ = c.response()
        api.append(s)
        n += 1
        if s == 429:
            break
        if "close" in ",".join(h.get("connection", [])).lower():
            c.close()
            c = Conn(fg.port)
    c.close()
    assert api[-1] == 429 and set(api[:-1]) == {200} and len(api) >= 11, api

    # the warm-up: one URL, fetched through the traffic listener
    status, body = warm(fg, ["http://shop.test/c/warmed?cc=max-age=60"])
    assert status == 202 and json.loads(body) == {"accepted": 1}
    n += 1
    deadline = time.time() + 10
    while time.time() < deadline and fg.stats()["cache_warm"]["done"] < 1:
        time.sleep(0.02)
    assert fg.stats()["cache_warm"]["done"] == 1
    c = Conn(fg.port)
    c.send("GET /c/warmed?cc=max-age=60 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
    _, h, _ = c.response()
    c.close()
    n += 1
    assert h["x-cache"] == ["HIT"]

    m1, _ = scrape(fg)
    st = fg.stats()

    def delta(name, **labels):
        return value(m1, name, **labels) - value(m0, name, **labels)

    # every family present, typed, with samples
    for name, typ in EXPECTED.items():
        assert name in m1 and m1[name].type == typ, name
    assert all(f.samples for f in m1.values())

    # downstream requests and the latency histogram count the same requests
    assert delta("flashgate_downstream_requests_total") == n
    assert delta("flashgate_request_duration_seconds_count") == n
    assert delta('flashgate_request_duration_seconds_bucket', le="+Inf") == n
    assert delta("flashgate_request_duration_seconds_sum") > 0
    assert delta("flashgate_downstream_responses_total", **{"class": "4xx"}) == 1
    assert delta("flashgate_downstream_responses_total", **{"class": "2xx"}) == n - 1
    assert delta("flashgate_downstream_connections_total") >= 5
    assert delta("flashgate_downstream_bytes_in_total") > 0
    assert delta("flashgate_downstream_bytes_out_total") > 0
    assert value(m1, "flashgate_downstream_requests_total") == st["downstream"]["requests_total"]

    # the cache
    assert value(m1, "flashgate_cache_hits_total", cache="main") >= 1
    assert value(m1, "flashgate_cache_hits_total", cache="main") == st["caches"]["main"]["hits"] == 2
    assert value(m1, "flashgate_cache_misses_total", cache="main") == st["caches"]["main"]["misses"] == 2
    assert value(m1, "flashgate_cache_stores_total", cache="main") == 2
    assert value(m1, "flashgate_cache_entries", cache="main") == 2
    assert value(m1, "flashgate_cache_bytes", cache="main") > 0

    # the limit
    assert value(m1, "flashgate_limit_limited_total", limit="per_ip") >= 1
    assert value(m1, "flashgate_limit_limited_total", limit="per_ip") == st["limits"]["per_ip"]["limited"] == 1
    assert value(m1, "flashgate_limit_allowed_total", limit="per_ip") == len(api) - 1
    assert value(m1, "flashgate_limit_redis_duration_seconds_count", limit="per_ip") == 0

    # the warm-up
    assert value(m1, "flashgate_cache_warm_done_total") >= 1
    assert value(m1, "flashgate_cache_warm_done_total") == st["cache_warm"]["done"] == 1
    assert value(m1, "flashgate_cache_warm_failed_total") == 0
    assert value(m1, "flashgate_cache_warm_queued") == 0
    assert value(m1, "flashgate_cache_warm_in_flight") == 0

    # the upstream saw the allowed API requests and the two cache misses
    assert delta("flashgate_upstream_requests_total", upstream="app") == len(api) - 1 + 2
    assert value(m1, "flashgate_upstream_requests_total", upstream="app") == st["upstreams"]["app"]["requests"]


def test_metrics_stay_valid_while_traffic_flows(flashgate, origin):
    """A scrape taken while requests complete must be as valid as one taken at rest: in
    every scrape a histogram's _count equals its le="+Inf" bucket."""
    fg = full(flashgate)
    stop = threading.Event()

    def load(i):
        c = None
        while not stop.is_set():
            try:
                c = c or Conn(fg.port)
                c.send(f"GET /c/load{i % 2}?cc=max-age=60 HTTP/1.1\r\nHost: t\r\n\r\n")
                c.response()
            except (EOFError, OSError):  # keepalive_requests reached: a new connection
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    bad, scrapes = None, 0
    deadline = time.time() + 5
    try:
        while time.time() < deadline and scrapes < 300 and bad is None:
            scrapes += 1
            try:
                scrape(fg)
            except ExpositionError as e:
                bad = e
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert bad is None, f"scrape {scrapes} of a busy flashgate: {bad}"
    fams, _ = scrape(fg)
    assert value(fams, "flashgate_downstream_requests_total") > scrapes  # the load did run
