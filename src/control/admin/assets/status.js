// smart-ai-router status page: refreshes the server-rendered sections from /status.json every
// few seconds and sends the page's actions to the existing admin API. Plain JS, no framework.
// Every text from the feed goes through esc() before it reaches innerHTML; the renderers
// mirror src/control/admin/status.rs so a refresh shows exactly what a reload would.
(function () {
  "use strict";
  var REFRESH_MS = 3000;
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var timer = null;

  function esc(v) {
    if (v === null || v === undefined) return "–";
    return String(v).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function num(v, d) { return typeof v === "number" ? v.toFixed(d) : "–"; }
  function money(v) {
    return typeof v === "number" && v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(6) : num(v, 4);
  }
  function pct(v) { return typeof v === "number" ? (v * 100).toFixed(1) + "%" : "–"; }
  function clock(t) {
    if (typeof t !== "number") return "–";
    return new Date(t * 1000).toISOString().substr(11, 8);
  }
  function set(id, html) { var e = document.getElementById(id); if (e) e.innerHTML = html; }

  function renderMeta(d) {
    return "v" + esc(d.version) + " · " + esc(d.driver) + " · epoch " + esc(d.snapshot.epoch) +
      " · updated " + clock(d.now_unix) + " UTC";
  }

  function renderGateway(d) {
    var t = d.snapshot.traffic, h = '<dl class="cards">';
    [["in flight", t.in_flight], ["streams", t.streams], ["connections", t.connections]].forEach(function (x) {
      h += "<div><dt>" + x[0] + "</dt><dd>" + esc(x[1]) + "</dd></div>";
    });
    ["1m", "5m"].forEach(function (s) {
      var w = t.window[s] || {};
      h += "<div><dt>req/s (" + s + ")</dt><dd>" + num(w.requests_per_s, 2) + "</dd></div>" +
        "<div><dt>errors (" + s + ")</dt><dd>" + pct(w.error_rate) + "</dd></div>" +
        "<div><dt>latency p50/p99 (" + s + ")</dt><dd>" + num(w.latency_p50_ms, 1) + " / " + num(w.latency_p99_ms, 1) + " ms</dd></div>" +
        "<div><dt>overhead p50/p99 (" + s + ")</dt><dd>" + num(w.overhead_p50_ms, 2) + " / " + num(w.overhead_p99_ms, 2) + " ms</dd></div>";
    });
    return h + "</dl>";
  }

  function renderState(c) {
    var h = c.health || {}, out;
    switch (c.state) {
      case "ok": out = '<span class="badge ok">healthy</span>'; break;
      case "disabled": out = '<span class="badge disabled">disabled</span>'; break;
      case "half_open": out = '<span class="badge half_open">half-open</span> <span class="why">' + esc(h.reason) + "</span>"; break;
      case "cooling": out = '<span class="badge cooling">cooling</span> <span class="why">' + esc(h.reason) +
        " until " + clock(h.until_unix) + " UTC (" + num(h.remaining_s, 0) + "s)</span>"; break;
      default: out = '<span class="badge">' + esc(c.state) + "</span>";
    }
    if (c.endpoint_cooldowns && c.endpoint_cooldowns.length) {
      out += '<div class="why">endpoint unsupported: ' + c.endpoint_cooldowns.map(function (e) { return esc(e.endpoint); }).join(", ") + "</div>";
    }
    if (c.model_cooldowns && c.model_cooldowns.length) {
      out += '<div class="why">models out: ' + c.model_cooldowns.map(function (m) { return esc(m.model); }).join(", ") + "</div>";
    }
    return out;
  }

  function spanStats(w) {
    w = w || {};
    return num(w.requests_per_s, 2) + " req/s · " + pct(w.error_rate) + " err<br>lat " + num(w.latency_p50_ms, 0) +
      " / " + num(w.latency_p99_ms, 0) + " ms<br>ttft " + num(w.ttft_p50_ms, 0) + " / " + num(w.ttft_p99_ms, 0) + " ms";
  }

  function renderChannels(d) {
    var h = '<table class="channels"><thead><tr><th>Channel</th><th>State</th><th>Models</th>' +
      "<th>Last 1 min</th><th>Last 5 min</th><th>Actions</th></tr></thead><tbody>";
    d.channels.forEach(function (c) {
      var id = esc(c.id), models = (c.model_names || []).map(esc);
      var shown = models.length > 6 ? models.slice(0, 6).join(", ") + ' <span class="muted">+' + (models.length - 6) + " more</span>" : models.join(", ");
      var on = c.enabled !== false;
      h += '<tr data-channel="' + id + '" data-state="' + esc(c.state) + '"><td data-label="Channel"><b>' + id + "</b>" +
        '<div class="muted">' + esc(c.provider) + " · priority " + esc(c.priority) + "</div></td>" +
        '<td data-label="State" class="state">' + renderState(c) + '</td><td data-label="Models">' + shown + "</td>" +
        '<td data-label="1 min">' + spanStats(c.window["1m"]) + '</td><td data-label="5 min">' + spanStats(c.window["5m"]) + "</td>" +
        '<td data-label="Actions" class="actions">' +
        '<button type="button" data-action="' + (on ? "disable" : "enable") + '" data-channel="' + id + '">' + (on ? "Disable" : "Enable") + "</button> " +
        '<button type="button" data-action="clear" data-channel="' + id + '">Clear cooldown</button> ' +
        '<button type="button" data-action="priority" data-channel="' + id + '">Priority…</button></td></tr>';
    });
    return h + "</tbody></table>";
  }

  function renderUsage(d) {
    var u = d.usage;
    var h = '<p class="muted">UTC day ' + esc(u.day) + " since this process started; currency " + esc(u.currency) + '.</p><div class="usage">';
    [["By key", "keys"], ["By channel", "channels"], ["By model", "models"]].forEach(function (x) {
      var rows = u[x[1]] || [];
      var metric = rows.some(function (r) { return r.cost > 0; }) ? "cost" : "requests";
      var max = rows.reduce(function (m, r) { return Math.max(m, r[metric] || 0); }, 0);
      h += '<table class="totals"><caption>' + x[0] + "</caption><thead><tr><th>Name</th><th>Req</th><th>Err</th>" +
        "<th>Tokens</th><th>Cost</th><th>" + metric + "</th></tr></thead><tbody>";
      if (!rows.length) h += '<tr><td colspan="6" class="muted">no requests yet</td></tr>';
      rows.forEach(function (r) {
        var w = max > 0 ? Math.round((r[metric] || 0) / max * 100) : 0;
        h += "<tr><td>" + esc(r.key) + "</td><td>" + esc(r.requests) + "</td><td>" + esc(r.errors) + "</td><td>" +
          ((r.prompt_tokens || 0) + (r.completion_tokens || 0)) + "</td><td>" + money(r.cost) + "</td><td>" +
          '<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="' + metric + '">' +
          '<rect width="' + w + '" height="10"></rect></svg></td></tr>';
      });
      h += "</tbody></table>";
    });
    return h + "</div>";
  }

  function renderSystem(d) {
    var s = d.snapshot, r = s.reloads;
    var disc = s.discovery.running ? "running" : s.discovery.enabled ? "idle" : "off";
    var h = '<dl class="facts"><dt>Epoch</dt><dd>' + esc(s.epoch) + " (generation " + esc(s.generation) + ")</dd>" +
      "<dt>Config</dt><dd>" + esc(s.config) + "</dd><dt>Channels</dt><dd>" + esc(s.channels) + " (" + esc(s.channels_enabled) +
      " enabled), " + esc(s.models) + " models</dd><dt>Uptime</dt><dd>" + num(s.uptime_s, 0) + " s</dd>" +
      "<dt>Discovery</dt><dd>" + disc + "</dd><dt>Reloads</dt><dd>" + esc(r.applied) + " applied, " + esc(r.rejected) + " rejected</dd></dl>";
    if (r.recent && r.recent.length) {
      h += '<ul class="reloads">';
      r.recent.slice().reverse().forEach(function (x) {
        h += "<li>" + clock(x.at_unix) + " UTC: " + (x.ok ? "applied" : "rejected: " + x.errors.map(esc).join("; ")) + "</li>";
      });
      h += "</ul>";
    }
    return h;
  }

  function renderCluster(d) {
    var c = d.cluster;
    if (!c) return "";
    return '<dl class="facts"><dt>This instance</dt><dd>' + esc(c.instance_id) + "</dd><dt>Redis</dt><dd>" + esc(c.redis) +
      " (" + (c.connected ? "connected" : "disconnected") + ")</dd><dt>Instances</dt><dd>" + (c.instances || []).map(esc).join(", ") +
      "</dd><dt>Sync rounds</dt><dd>" + esc(c.rounds_ok) + " ok, " + esc(c.rounds_failed) + " failed, last " + num(c.last_round_ms, 1) +
      " ms</dd><dt>Last error</dt><dd>" + esc(c.last_error) + "</dd></dl>";
  }

  function render(d) {
    set("meta", renderMeta(d));
    set("gateway", renderGateway(d));
    set("channels", renderChannels(d));
    set("usage", renderUsage(d));
    set("system", renderSystem(d));
    set("cluster", renderCluster(d));
    var fleet = document.getElementById("fleet");
    if (fleet) fleet.hidden = !d.cluster;
  }

  function flash(text, error) {
    var box = document.getElementById("flash");
    if (!box) return;
    var p = document.createElement("p");
    p.textContent = new Date().toISOString().substr(11, 8) + " " + text;
    if (error) p.className = "error";
    box.insertBefore(p, box.firstChild);
    while (box.childNodes.length > 4) box.removeChild(box.lastChild);
  }

  function refresh() {
    return fetch("/status.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
        if (!r.ok) throw new Error("status.json answered " + r.status);
        return r.json();
      })
      .then(render)
      .catch(function (e) { flash("refresh failed: " + e.message, true); });
  }

  function call(method, path, body) {
    var headers = { "x-csrf-token": csrf };
    if (body !== undefined) headers["content-type"] = "application/json";
    return fetch(path, {
      method: method, credentials: "same-origin", headers: headers,
      body: body === undefined ? (method === "GET" ? undefined : "") : JSON.stringify(body)
    }).then(function (r) {
      return r.text().then(function (t) {
        var doc = null;
        try { doc = JSON.parse(t); } catch (e) { doc = null; }
        return { status: r.status, ok: r.ok, doc: doc, text: t };
      });
    });
  }

  function describe(res) {
    var d = res.doc;
    if (!res.ok) return (d && d.error && d.error.message) || ("HTTP " + res.status);
    if (!d) return "done";
    if (d.id && d.state) return "channel " + d.id + " is now " + d.state + " (priority " + d.priority + ")";
    if (d.status === "reloaded") return "config reloaded: epoch " + d.epoch + ", " + d.channels + " channels";
    if (d.status === "started") return "discovery round started";
    if (typeof d.cleared === "number") return "cleared " + d.cleared + " cooldown(s), epoch " + d.epoch;
    return JSON.stringify(d);
  }

  var actions = {
    disable: function (id) { return ["POST", "/admin/channels/" + encodeURIComponent(id) + "/disable"]; },
    enable: function (id) { return ["POST", "/admin/channels/" + encodeURIComponent(id) + "/enable"]; },
    clear: function (id) { return ["DELETE", "/admin/cooldowns/" + encodeURIComponent(id)]; },
    priority: function (id) {
      var p = window.prompt("New priority for " + id + " (higher is tried first):", "0");
      if (p === null) return null;
      return ["PUT", "/admin/channels/" + encodeURIComponent(id) + "/priority", { priority: parseInt(p, 10) }];
    },
    reload: function () { return ["POST", "/admin/reload"]; },
    discover: function () { return ["POST", "/admin/discovery/refresh"]; }
  };

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-action]") : null;
    if (!b || !actions[b.dataset.action]) return;
    var id = b.dataset.channel || "";
    var req = actions[b.dataset.action](id);
    if (!req) return;
    b.disabled = true;
    call(req[0], req[1], req[2]).then(function (res) {
      flash((id ? id + ": " : "") + b.dataset.action + " → " + describe(res), !res.ok);
      return refresh();
    }).catch(function (e) {
      flash(b.dataset.action + " failed: " + e.message, true);
    }).then(function () { b.disabled = false; });
  });

  function loop() {
    refresh().then(function () { timer = window.setTimeout(loop, REFRESH_MS); });
  }
  timer = window.setTimeout(loop, REFRESH_MS);
})();
