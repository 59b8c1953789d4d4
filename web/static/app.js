// sessctl admin UI: live approvals inbox and stream replay. No framework,
// no inline script (the Content-Security-Policy forbids it), and recorded
// text only ever reaches the page through textContent.
"use strict";

(function () {
  function csrfToken() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  // Highlights [MASKED:...] spans the way the server-rendered pages do.
  function appendMasked(parent, text) {
    var re = /\[MASKED:[^\]\s]{0,200}\]/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) { parent.appendChild(document.createTextNode(text.slice(last, m.index))); }
      parent.appendChild(el("mark", { "class": "masked" }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) { parent.appendChild(document.createTextNode(text.slice(last))); }
  }

  function fmtTime(s) {
    var d = new Date(s);
    if (isNaN(d.getTime()) || d.getUTCFullYear() < 2) { return "-"; }
    return d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  // ---- approvals inbox ----

  function approvalsPage(root) {
    var live = document.getElementById("live");
    var empty = document.getElementById("no-approvals");
    var decided = document.getElementById("decided");

    function updateEmpty() {
      empty.hidden = root.querySelector("article.approval") !== null;
    }

    function decideForm(id, decision, required) {
      var f = el("form", { "class": "decide", method: "post", action: "/approvals/" + encodeURIComponent(id) + "/" + decision });
      f.appendChild(el("input", { type: "hidden", name: "csrf", value: csrfToken() }));
      var reason = el("input", { name: "reason", placeholder: required ? "reason (required)" : "reason (optional)" });
      if (required) { reason.required = true; }
      f.appendChild(reason);
      f.appendChild(el("button", { type: "submit", "class": decision }, decision === "approve" ? "Approve" : "Deny"));
      return f;
    }

    function card(r) {
      var a = el("article", { "class": "approval", id: "approval-" + r.id, "data-id": r.id });
      var h = el("h2");
      h.appendChild(el("span", { "class": "mono" }, r.id));
      h.appendChild(document.createTextNode(" "));
      h.appendChild(el("small", null, r.requester));
      a.appendChild(h);
      var dl = el("dl", { "class": "grid" });
      var rows = [["Request", (r.method || "") + " " + (r.host || "") + (r.path || "")],
       ["Model", r.model || "-"], ["Rule or policy", r.rule || "-"], ["Session", r.session_id || "-"]];
      if (r.origin) { rows.push(["Held by", r.origin]); }
      rows.push(["Held since", fmtTime(r.created)], ["Times out", fmtTime(r.expires)]);
      rows.forEach(function (p) {
        dl.appendChild(el("dt", null, p[0]));
        dl.appendChild(el("dd", null, p[1]));
      });
      a.appendChild(dl);
      if (r.prompt) {
        var pre = el("pre", { "class": "body prompt" });
        appendMasked(pre, r.prompt);
        a.appendChild(pre);
      }
      a.appendChild(decideForm(r.id, "approve", false));
      a.appendChild(decideForm(r.id, "deny", true));
      return a;
    }

    function add(r) {
      if (document.getElementById("approval-" + r.id)) { return; }
      root.appendChild(card(r));
      updateEmpty();
    }

    function remove(id) {
      var a = document.getElementById("approval-" + id);
      if (a) { a.remove(); }
      updateEmpty();
    }

    function noteDecision(ev) {
      var d = ev.decision || {};
      var text = d.id + " " + d.decision + (d.by ? " by " + d.by : "") + (d.reason ? ": " + d.reason : "") +
        " (" + (ev.request ? ev.request.requester : "") + ")";
      var li = el("li", { "data-id": d.id, "data-decision": d.decision }, text);
      decided.insertBefore(li, decided.firstChild);
    }

    root.addEventListener("submit", function (e) {
      var f = e.target;
      if (!f.classList || !f.classList.contains("decide")) { return; }
      e.preventDefault();
      var art = f.closest("article.approval");
      var id = art.getAttribute("data-id");
      var decision = /\/deny$/.test(f.getAttribute("action")) ? "deny" : "approve";
      var reason = f.querySelector('input[name="reason"]').value;
      var buttons = art.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      fetch("/api/v1/approvals/" + encodeURIComponent(id) + "/" + decision, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ reason: reason })
      }).then(function (resp) {
        return resp.json().then(function (body) { return { ok: resp.ok, body: body }; });
      }).then(function (res) {
        if (res.ok) {
          remove(id);
          return;
        }
        buttons.forEach(function (b) { b.disabled = false; });
        var msg = art.querySelector(".error") || el("p", { "class": "error", role: "alert" });
        msg.textContent = res.body && res.body.error ? res.body.error : "failed";
        art.appendChild(msg);
      }).catch(function () {
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });

    if (!window.EventSource) { return; }
    var es = new EventSource("/api/v1/approvals/stream");
    es.addEventListener("open", function () {
      live.textContent = "live";
      live.className = "badge live";
    });
    es.addEventListener("error", function () {
      live.textContent = "reconnecting";
      live.className = "badge unknown";
    });
    es.addEventListener("pending", function (e) {
      var list = JSON.parse(e.data).approvals || [];
      var want = {};
      list.forEach(function (r) { want[r.id] = true; add(r); });
      root.querySelectorAll("article.approval").forEach(function (a) {
        if (!want[a.getAttribute("data-id")]) { a.remove(); }
      });
      updateEmpty();
    });
    es.addEventListener("held", function (e) { add(JSON.parse(e.data).request); });
    es.addEventListener("decided", function (e) {
      var ev = JSON.parse(e.data);
      remove(ev.request.id);
      noteDecision(ev);
    });
  }

  // ---- replay ----

  // blockLabel is what the text shows at the start of an Anthropic
  // content block: thinking and tool calls are marked as such.
  function blockLabel(b) {
    switch (b && b.type) {
      case "thinking": return "[thinking] ";
      case "redacted_thinking": return "[redacted thinking]";
      case "tool_use": case "server_tool_use": return "[tool call " + (b.name || "") + "] ";
    }
    return "";
  }

  // textOfEvent returns the text one server-sent event adds: a chat
  // completion chunk's delta content, a Responses API *.delta string, or
  // an Anthropic Messages block's text, thinking or tool input.
  function textOfEvent(data) {
    var ev;
    try { ev = JSON.parse(data); } catch (e) { return ""; }
    if (!ev || typeof ev !== "object") { return ""; }
    if (ev.choices && ev.choices.length && ev.choices[0].delta) {
      return ev.choices[0].delta.content || "";
    }
    if (typeof ev.delta === "string" && /\.delta$/.test(ev.type || "")) { return ev.delta; }
    if (ev.type === "content_block_start") {
      return (ev.index > 0 ? "\n\n" : "") + blockLabel(ev.content_block);
    }
    if (ev.type === "content_block_delta" && ev.delta && typeof ev.delta === "object") {
      var d = ev.delta;
      if (typeof d.text === "string") { return d.text; }
      if (typeof d.thinking === "string") { return d.thinking; }
      if (typeof d.partial_json === "string") { return d.partial_json; }
    }
    return "";
  }

  function replayPage(root) {
    var seq = root.getAttribute("data-seq");
    var playBtn = document.getElementById("play");
    if (!playBtn) { return; }
    var restartBtn = document.getElementById("restart");
    var speedSel = document.getElementById("speed");
    var clock = document.getElementById("clock");
    var progress = document.getElementById("progress");
    var textOut = document.getElementById("replay-text");
    var rawOut = document.getElementById("replay-raw");

    var chunks = [];       // {t: offset ms, bytes: Uint8Array}
    var next = 0;          // index of the next chunk to show
    var vt = 0;            // virtual time (ms since the exchange started)
    var playing = false, baseReal = 0, baseVirtual = 0, timer = null;
    var decoder, sseBuf;

    function reset() {
      next = 0; vt = 0;
      decoder = new TextDecoder("utf-8");
      sseBuf = "";
      textOut.textContent = "";
      rawOut.textContent = "";
      show();
    }

    function show() {
      clock.textContent = Math.round(vt) + " ms";
      progress.textContent = next + "/" + chunks.length + " deltas";
    }

    function feed(bytes, last) {
      var s = decoder.decode(bytes, { stream: !last });
      rawOut.appendChild(document.createTextNode(s));
      sseBuf += s;
      var parts = sseBuf.split(/\r?\n\r?\n/);
      sseBuf = parts.pop();
      if (last && sseBuf) { parts.push(sseBuf); sseBuf = ""; }
      parts.forEach(function (ev) {
        ev.split(/\r?\n/).forEach(function (line) {
          if (line.indexOf("data:") === 0) {
            var t = textOfEvent(line.slice(5).trim());
            if (t) { appendMasked(textOut, t); }
          }
        });
      });
    }

    function tick() {
      timer = null;
      if (!playing) { return; }
      vt = baseVirtual + (performance.now() - baseReal) * speed();
      while (next < chunks.length && chunks[next].t <= vt) {
        feed(chunks[next].bytes, next === chunks.length - 1);
        next++;
      }
      show();
      if (next >= chunks.length) {
        playing = false;
        playBtn.textContent = "Play";
        root.setAttribute("data-state", "done");
        return;
      }
      var wait = (chunks[next].t - vt) / speed();
      timer = setTimeout(tick, Math.max(0, Math.min(wait, 100)));
    }

    function speed() { return parseFloat(speedSel.value) || 1; }

    function play() {
      if (next >= chunks.length) { reset(); }
      playing = true;
      baseReal = performance.now();
      baseVirtual = vt;
      playBtn.textContent = "Pause";
      root.setAttribute("data-state", "playing");
      tick();
    }

    function pause() {
      if (!playing) { return; }
      vt = baseVirtual + (performance.now() - baseReal) * speed();
      playing = false;
      if (timer) { clearTimeout(timer); timer = null; }
      playBtn.textContent = "Play";
      root.setAttribute("data-state", "paused");
      show();
    }

    playBtn.disabled = true;
    Promise.all([
      fetch("/api/v1/sessions/" + encodeURIComponent(seq), { credentials: "same-origin" }).then(function (r) { return r.json(); }),
      fetch("/api/v1/sessions/" + encodeURIComponent(seq) + "/answer", { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.arrayBuffer() : new ArrayBuffer(0);
      })
    ]).then(function (res) {
      var deltas = res[0].deltas || [];
      var bytes = new Uint8Array(res[1]);
      var off = 0;
      deltas.forEach(function (d) {
        var end = Math.min(bytes.length, off + Math.max(0, d.n | 0));
        chunks.push({ t: d.t, bytes: bytes.subarray(off, end) });
        off = end;
      });
      if (off < bytes.length) {
        var t = chunks.length ? chunks[chunks.length - 1].t : 0;
        chunks.push({ t: t, bytes: bytes.subarray(off) });
      }
      reset();
      playBtn.disabled = false;
      root.setAttribute("data-state", "ready");
    });

    playBtn.addEventListener("click", function () { if (playing) { pause(); } else { play(); } });
    restartBtn.addEventListener("click", function () {
      var was = playing;
      pause();
      reset();
      if (was) { play(); }
    });
    speedSel.addEventListener("change", function () {
      if (playing) { pause(); play(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var a = document.getElementById("approvals");
    if (a) { approvalsPage(a); }
    var r = document.getElementById("replay");
    if (r) { replayPage(r); }
  });
})();
