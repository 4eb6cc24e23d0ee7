/*
 * app.js — flashgate's dashboard. It follows /stats/stream (server-sent events: one
 * summary a second, the last ten minutes first) and draws it: numbers, tables and SVG
 * charts made here, nothing loaded from elsewhere. The summary's members are described in
 * docs/operations.md; the page reads only "v": 1 summaries.
 */
"use strict";

(function () {
  const WINDOW_MS = 10 * 60 * 1000; /* what the charts show, and what is kept */
  const SVG = "http://www.w3.org/2000/svg";
  const summaries = []; /* oldest first */
  let source = null;
  let renderQueued = false;

  /* ---- errors are part of the page: a test, or an operator, sees them ---- */

  function recordError(text) {
    const list = document.getElementById("js-errors");
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
    list.hidden = false;
    list.dataset.count = String(list.children.length);
  }
  window.addEventListener("error", function (e) {
    recordError("error: " + e.message + " (" + (e.filename || "?") + ":" + (e.lineno || 0) + ")");
  });
  window.addEventListener("unhandledrejection", function (e) {
    recordError("unhandled rejection: " + String(e.reason));
  });

  /* ---- formatting ---- */

  const nf0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

  function fmtRate(v) {
    if (v == null || !isFinite(v)) return "–";
    return v < 10 ? nf1.format(v) : nf0.format(v);
  }
  function fmtMs(v) {
    if (v == null || !isFinite(v)) return "–";
    return v < 1 ? nf2.format(v) : v < 100 ? nf1.format(v) : nf0.format(v);
  }
  function fmtPct(ratio) {
    return ratio == null ? "–" : nf1.format(ratio * 100) + " %";
  }
  function fmtCount(v) {
    return v == null ? "–" : nf0.format(v);
  }
  function fmtAge(ms) {
    if (ms == null) return "–";
    if (ms < 1000) return nf0.format(ms) + " ms";
    if (ms < 60000) return nf1.format(ms / 1000) + " s";
    if (ms < 3600000) return nf1.format(ms / 60000) + " min";
    return nf1.format(ms / 3600000) + " h";
  }
  /* An axis label: the decimals its step needs, thousands as k. */
  function fmtTick(v, top, decimals) {
    if (top >= 10000) return nf1.format(v / 1000) + "k";
    return v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }
  function fmtDuration(s) {
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + sec + "s";
    return sec + "s";
  }
  function fmtClock(t) {
    const d = new Date(t);
    const p = function (n) { return String(n).padStart(2, "0"); };
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  /* Set an element's text, and its raw value for whoever reads the DOM (the tests). */
  function show(id, text, value) {
    const el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    if (value !== undefined) el.dataset.value = value == null ? "" : String(value);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---- charts: SVG polylines over the last ten minutes ---- */

  /* A step for four grid lines above v: 1, 2, 2.5 or 5 times a power of ten (whole
   * numbers only for a series of counts). */
  function niceStep(v, whole) {
    if (!(v > 0)) return whole ? 1 : 0.25;
    const raw = (v * 1.05) / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    let step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
    if (whole) step = step < 1 ? 1 : step === 2.5 ? 5 : step;
    return step;
  }

  /* The decimals a step's multiples need: 0.25 -> 2, 2.5 -> 1, 5 -> 0. */
  function decimalsOf(step) {
    for (let d = 0; d < 3; d++) {
      const x = step * Math.pow(10, d);
      if (Math.abs(Math.round(x) - x) < 1e-9) return d;
    }
    return 3;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  /*
   * series: [{name, cls, get(summary) -> number|null}]; opts: {unit, fmt, max (fixed
   * top), legend: element id}. Every series is one polyline with data-points set to the
   * number of samples it draws.
   */
  function drawChart(id, series, opts) {
    const svg = document.getElementById(id);
    if (!svg || summaries.length === 0) return;
    const w = Math.max(200, Math.round(svg.clientWidth || 600));
    const h = Math.max(120, Math.round(svg.clientHeight || 180));
    const left = 46, right = 8, top = 8, bottom = 22;
    const last = summaries[summaries.length - 1].t;
    const first = Math.max(summaries[0].t, last - WINDOW_MS);
    const span = Math.max(60000, last - first);
    const t0 = last - span;
    let top_v = 0;
    const points = series.map(function (s) {
      const pts = [];
      for (const x of summaries) {
        if (x.t < t0 || x.interval_ms === 0) continue; /* the first summary has no rates */
        const v = s.get(x);
        if (v == null || !isFinite(v)) continue;
        pts.push([x.t, v]);
        if (v > top_v) top_v = v;
      }
      return pts;
    });
    const step_v = opts.max != null ? opts.max / 4 : niceStep(top_v, opts.whole);
    const ymax = step_v * 4;
    const decimals = decimalsOf(step_v);
    const X = function (t) { return left + ((t - t0) / span) * (w - left - right); };
    const Y = function (v) { return top + (1 - Math.min(v, ymax) / ymax) * (h - top - bottom); };

    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    const axis = svgEl("g", { class: "axis" });
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4, y = Y(v);
      axis.appendChild(svgEl("line", { x1: left, x2: w - right, y1: y, y2: y, class: i ? "grid" : "base" }));
      const label = svgEl("text", { x: left - 4, y: y + 4, "text-anchor": "end" });
      label.textContent = opts.tick ? opts.tick(v) : fmtTick(v, ymax, decimals);
      axis.appendChild(label);
    }
    const step = span > 5 * 60000 ? 120000 : span > 2 * 60000 ? 60000 : 20000;
    for (let t = Math.ceil(t0 / step) * step; t <= last; t += step) {
      const x = X(t);
      if (x < left + 24 || x > w - right - 24) continue; /* a label half off the plot */
      axis.appendChild(svgEl("line", { x1: x, x2: x, y1: top, y2: h - bottom, class: "grid" }));
      const label = svgEl("text", { x: x, y: h - 6, "text-anchor": "middle" });
      label.textContent = step < 60000 ? fmtClock(t) : fmtClock(t).slice(0, 5);
      axis.appendChild(label);
    }
    svg.appendChild(axis);
    series.forEach(function (s, i) {
      const pts = points[i];
      const line = svgEl("polyline", {
        class: "series " + s.cls,
        points: pts.map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); }).join(" "),
        "data-series": s.name,
        "data-points": String(pts.length),
      });
      svg.appendChild(line);
    });

    if (opts.legend) {
      const lg = document.getElementById(opts.legend);
      while (lg.firstChild) lg.removeChild(lg.firstChild);
      const now = summaries[summaries.length - 1];
      series.forEach(function (s) {
        const item = el("span", "item " + s.cls);
        item.appendChild(el("i", "swatch"));
        item.appendChild(document.createTextNode(s.name + " "));
        const v = s.get(now);
        item.appendChild(el("b", "", v == null ? "–" : opts.fmt(v) + (opts.suffix || "")));
        lg.appendChild(item);
      });
    }
  }

  /* ---- the parts of the page ---- */

  function renderHeader(s) {
    show("instance", s.instance);
    show("generation", String(s.generation), s.generation);
    show("uptime", fmtDuration(s.uptime_s));
    show("workers", String(s.workers));
    show("version", s.version);
    show("updated", fmtClock(s.t), s.t);
    document.getElementById("draining").hidden = !s.draining;
    document.title = "flashgate · " + s.instance;
  }

  function renderKpis(s) {
    show("kpi-rps", fmtRate(s.rate.requests), s.rate.requests);
    const hr = s.hit_ratio.interval;
    show("kpi-hit", hr == null ? "–" : nf1.format(hr * 100), hr);
    show("kpi-p99", fmtMs(s.latency_ms.p99), s.latency_ms.p99);
    show("kpi-5xx", fmtRate(s.rate["5xx"]), s.rate["5xx"]);
    show("kpi-429", fmtRate(s.rate.limited), s.rate.limited);
    show("kpi-202", fmtRate(s.rate.offloaded), s.rate.offloaded);
    show("kpi-conns", fmtCount(s.connections.active), s.connections.active);
    const a = s.offload.agent;
    show("kpi-spool", a && a.up ? fmtCount(a.spool_depth) : "–", a && a.up ? a.spool_depth : null);
  }

  function renderTotals(s) {
    const t = s.total;
    for (const k of ["requests", "hit", "miss", "stale", "pass", "limited", "offloaded", "5xx"])
      show("total-" + k, fmtCount(t[k]), t[k]);
    show("total-hit-ratio", fmtPct(s.hit_ratio.total), s.hit_ratio.total);
    show("total-tls", fmtCount(s.tls.total.handshakes), s.tls.total.handshakes);
  }

  function renderUpstreams(s) {
    const box = document.getElementById("upstreams");
    while (box.firstChild) box.removeChild(box.firstChild);
    if (s.upstreams.length === 0) {
      box.appendChild(el("p", "dim", "no upstream"));
      return;
    }
    for (const u of s.upstreams) {
      const head = el("div", "up-head");
      head.appendChild(el("b", "", u.name));
      head.appendChild(el("span", "dim", fmtRate(u.rate) + " req/s · " + fmtRate(u.errors) +
        " errors/s · " + fmtRate(u.retries) + " retries/s"));
      box.appendChild(head);
      const cap = Math.max(u.pool_max, u.active + u.idle, 1);
      const bar = el("div", "bar pool");
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", "connections: " + u.active + " in use, " + u.idle + " idle");
      const busy = el("div", "busy"), idle = el("div", "idle");
      busy.style.width = ((100 * u.active) / cap).toFixed(1) + "%";
      idle.style.width = ((100 * u.idle) / cap).toFixed(1) + "%";
      bar.appendChild(busy);
      bar.appendChild(idle);
      box.appendChild(bar);
      const pool = el("p", "dim small", "connections: " + u.active + " in use, " + u.idle +
        " idle (pools keep up to " + u.pool_max + " idle)");
      pool.dataset.active = String(u.active);
      pool.dataset.idle = String(u.idle);
      box.appendChild(pool);
      const table = el("table", "grid");
      const hr = el("tr");
      for (const [text, cls] of [["server", ""], ["health", ""], ["req/s", "num"], ["fails", "num"]])
        hr.appendChild(el("th", cls, text));
      const thead = el("thead");
      thead.appendChild(hr);
      table.appendChild(thead);
      const body = el("tbody");
      for (const sv of u.servers) {
        const tr = el("tr");
        tr.dataset.upstream = u.name;
        tr.dataset.address = sv.address;
        tr.dataset.healthy = String(sv.healthy);
        tr.appendChild(el("td", "mono", sv.address));
        const td = el("td");
        td.appendChild(el("span", "pill " + (sv.healthy ? "good" : "bad"), sv.healthy ? "up" : "down"));
        tr.appendChild(td);
        tr.appendChild(el("td", "num", fmtRate(sv.rate)));
        tr.appendChild(el("td", "num", fmtCount(sv.fails)));
        body.appendChild(tr);
      }
      table.appendChild(body);
      box.appendChild(table);
    }
  }

  // Empties the table body id; with no rows, puts one dim line of text across cols columns
  // and returns null, else returns the body for the rows.
  function tableBody(id, rows, emptyText, cols) {
    const body = document.getElementById(id);
    while (body.firstChild) body.removeChild(body.firstChild);
    if (rows && rows.length > 0) return body;
    const tr = el("tr");
    const td = el("td", "dim", emptyText);
    td.colSpan = cols;
    tr.appendChild(td);
    body.appendChild(tr);
    return null;
  }

  function renderLimits(s) {
    const body = tableBody("limits", s.limits, "no limit has decided yet", 4);
    if (body === null) return;
    for (const l of s.limits) {
      const tr = el("tr");
      tr.dataset.limit = l.name;
      tr.dataset.limitedTotal = String(l.limited_total);
      tr.appendChild(el("td", "", l.name));
      tr.appendChild(el("td", "num", fmtRate(l.allowed)));
      tr.appendChild(el("td", "num" + (l.limited > 0 ? " warn" : ""), fmtRate(l.limited)));
      tr.appendChild(el("td", "num", fmtCount(l.limited_total)));
      body.appendChild(tr);
    }
  }

  function fmtWait(sec) {
    if (sec >= 4294967295) return "–";
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.round(sec / 60) + " min";
    return Math.floor(sec / 3600) + " h " + Math.round((sec % 3600) / 60) + " min";
  }

  function renderRooms(s) {
    const body = tableBody("rooms", s.rooms, "no waiting room", 7);
    if (body === null) return;
    for (const r of s.rooms) {
      const tr = el("tr");
      tr.dataset.room = r.name;
      tr.dataset.waiting = String(r.waiting);
      tr.dataset.serving = String(r.serving);
      tr.appendChild(el("td", "", r.name));
      tr.appendChild(el("td", "num", fmtCount(r.waiting)));
      tr.appendChild(el("td", "num", fmtCount(r.serving)));
      tr.appendChild(el("td", "num", fmtRate(r.admitted)));
      tr.appendChild(el("td", "num", fmtCount(r.active)));
      tr.appendChild(el("td", "num", fmtWait(r.eta_s)));
      let inlet = r.on ? r.decision.replace("_", " ") : "off";
      if (r.fallback) inlet += " (fallback)";
      tr.appendChild(el("td", r.fallback || r.decision.indexOf("paused") === 0 ? "warn" : "",
                        inlet));
      body.appendChild(tr);
    }
  }

  function renderRoutes(s) {
    const body = tableBody("routes", s.routes, "no request yet", 5);
    if (body === null) return;
    for (const r of s.routes) {
      const tr = el("tr");
      tr.dataset.route = r.name;
      tr.dataset.requests = String(r.requests);
      tr.appendChild(el("td", "mono", r.name));
      tr.appendChild(el("td", "num", fmtRate(r.rate)));
      tr.appendChild(el("td", "num" + (r["5xx"] > 0 ? " warn" : ""), fmtRate(r["5xx"])));
      tr.appendChild(el("td", "num", r.rate > 0 ? fmtMs(r.p99_ms) : "–"));
      tr.appendChild(el("td", "num", fmtCount(r.requests)));
      body.appendChild(tr);
    }
  }

  function renderOffload(s) {
    const o = s.offload, a = o.agent;
    show("of-queued", fmtRate(o.rate.queued), o.rate.queued);
    show("of-fallback", fmtRate(o.rate.fallback), o.rate.fallback);
    const up = a && a.up;
    show("of-replay", up ? fmtRate(a.replay_rate) : "–", up ? a.replay_rate : null);
    show("of-sqs-sent", up ? fmtRate(a.sqs_sent_rate) : "–", up ? a.sqs_sent_rate : null);
    show("of-sqs-failed", up ? fmtRate(a.sqs_failed_rate) : "–", up ? a.sqs_failed_rate : null);
    show("of-oldest", up ? fmtAge(a.oldest_age_ms) : "–", up ? a.oldest_age_ms : null);
    const note = document.getElementById("of-agent");
    note.className = a && !a.up ? "bad-text" : "dim";
    note.textContent = !a
      ? "The spool's numbers come from flashgate-agent: set admin { agent_status ADDRESS; }."
      : !a.up
        ? "flashgate-agent does not answer its status listener."
        : o.in_flight + " record(s) in flight to the agent · " + fmtCount(a.sqs_sent) +
          " sent to SQS, " + fmtCount(a.sqs_failed) + " failed, " + fmtCount(a.replayed) +
          " replayed since the agent started";
    note.classList.add("small");
  }

  function renderWarm(s) {
    const w = s.warm;
    const total = w.done + w.failed + w.queued + w.in_flight;
    const done = total ? (100 * w.done) / total : 0, failed = total ? (100 * w.failed) / total : 0;
    document.getElementById("warm-done").style.width = done.toFixed(1) + "%";
    document.getElementById("warm-failed").style.width = failed.toFixed(1) + "%";
    const bar = document.getElementById("warm-bar");
    bar.setAttribute("aria-valuenow", (done + failed).toFixed(0));
    show("warm-text", w.jobs === 0 ? "no warm-up yet (POST /cache/warm)"
      : fmtCount(w.done) + " fetched, " + fmtCount(w.failed) + " failed, " + fmtCount(w.queued) +
        " queued, " + fmtCount(w.in_flight) + " in flight (" + w.jobs + " list" + (w.jobs > 1 ? "s" : "") + ")",
      w.done);
  }

  const outcomeSeries = [
    { name: "all", cls: "s-all", get: function (x) { return x.rate.requests; } },
    { name: "hit", cls: "s-hit", get: function (x) { return x.rate.hit; } },
    { name: "miss", cls: "s-miss", get: function (x) { return x.rate.miss; } },
    { name: "stale", cls: "s-stale", get: function (x) { return x.rate.stale; } },
    { name: "pass", cls: "s-pass", get: function (x) { return x.rate.pass; } },
    { name: "429", cls: "s-429", get: function (x) { return x.rate.limited; } },
    { name: "202", cls: "s-202", get: function (x) { return x.rate.offloaded; } },
    { name: "5xx", cls: "s-5xx", get: function (x) { return x.rate["5xx"]; } },
  ];

  function render() {
    renderQueued = false;
    if (summaries.length === 0) return;
    const s = summaries[summaries.length - 1];
    renderHeader(s);
    renderKpis(s);
    renderTotals(s);
    renderUpstreams(s);
    renderRoutes(s);
    renderLimits(s);
    renderRooms(s);
    renderOffload(s);
    renderWarm(s);
    drawChart("chart-outcomes", outcomeSeries, { fmt: fmtRate, legend: "legend-outcomes", suffix: "/s" });
    drawChart("chart-hit", [
      { name: "hit ratio", cls: "s-hit", get: function (x) {
        return x.hit_ratio.interval == null ? null : x.hit_ratio.interval * 100; } },
    ], { fmt: function (v) { return nf1.format(v) + " %"; }, tick: function (v) { return nf0.format(v) + "%"; },
      max: 100, legend: "legend-hit" });
    drawChart("chart-latency", [
      { name: "p50", cls: "s-p50", get: function (x) { return x.latency_ms.count ? x.latency_ms.p50 : null; } },
      { name: "p90", cls: "s-p90", get: function (x) { return x.latency_ms.count ? x.latency_ms.p90 : null; } },
      { name: "p99", cls: "s-p99", get: function (x) { return x.latency_ms.count ? x.latency_ms.p99 : null; } },
      { name: "app p99", cls: "s-app", get: function (x) {
        return x.app_ms && x.app_ms.count ? x.app_ms.p99 : null; } },
    ], { fmt: fmtMs, legend: "legend-latency", suffix: " ms" });
    drawChart("chart-spool", [
      { name: "spool depth", cls: "s-spool", get: function (x) {
        const a = x.offload.agent; return a && a.up ? a.spool_depth : null; } },
    ], { fmt: fmtCount, legend: "legend-spool", suffix: " records", whole: true });
    drawChart("chart-tls", [
      { name: "handshakes", cls: "s-tls", get: function (x) { return x.tls.rate.handshakes; } },
      { name: "resumed", cls: "s-tlsr", get: function (x) { return x.tls.rate.resumptions; } },
      { name: "failed", cls: "s-5xx", get: function (x) { return x.tls.rate.failures; } },
    ], { fmt: fmtRate, legend: "legend-tls", suffix: "/s" });
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(render, 0); /* the history comes as a burst: one render for all of it */
  }

  /* ---- the stream ---- */

  function setStatus(state, text) {
    const st = document.getElementById("status");
    st.dataset.state = state;
    st.className = "pill " + (state === "live" ? "good" : state === "connecting" ? "wait" : "bad");
    st.textContent = text;
  }

  function onSummary(e) {
    let s;
    try {
      s = JSON.parse(e.data);
    } catch (err) {
      recordError("a summary that is not JSON: " + err.message);
      return;
    }
    if (s.v !== 1) {
      recordError("summary version " + s.v + " (this page reads version 1)");
      return;
    }
    const last = summaries.length ? summaries[summaries.length - 1].t : 0;
    if (s.t <= last) return; /* already here (a reconnection sent the history again) */
    summaries.push(s);
    while (summaries.length && summaries[0].t < s.t - WINDOW_MS) summaries.shift();
    setStatus("live", "live");
    queueRender();
  }

  function connect() {
    source = new EventSource("/stats/stream");
    source.onmessage = onSummary;
    source.onopen = function () { setStatus("live", "live"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        /* refused (503: too many viewers) or not a stream: try again in a while */
        setStatus("down", "refused, retrying");
        source.close();
        setTimeout(connect, 5000);
      } else {
        setStatus("down", "reconnecting");
      }
    };
  }

  window.addEventListener("resize", queueRender);
  document.addEventListener("DOMContentLoaded", connect);
})();
