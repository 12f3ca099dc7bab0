// orch serve: makes a running run's page live. The page works without it (reload to update);
// with it, the run's events stream in over server-sent events and change the statuses in the
// table and the graph, and each step's log tail grows from where the page left it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var run = live.dataset.run;
  var base = "/runs/" + encodeURIComponent(run);
  var tails = {};

  function rowOf(label) {
    var rows = document.querySelectorAll("#steps tbody tr");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].dataset.label === label) return rows[i];
    }
    return null;
  }

  function setStatus(label, status) {
    var row = rowOf(label) || addRow(label);
    var cell = row.querySelector(".status");
    cell.className = "status " + status;
    cell.textContent = status;
    var box = boxOf(label);
    if (box) box.setAttribute("class", "step " + status);
    else redraw();
    if (status === "running") follow(row.dataset.step);
  }

  function boxOf(label) {
    var boxes = document.querySelectorAll("#graph g.step");
    for (var i = 0; i < boxes.length; i++) {
      if (boxes[i].dataset.label === label) return boxes[i];
    }
    return null;
  }

  // A step the graph does not show (a fan-out's instance): the server draws the graph again.
  var redrawing = false;
  function redraw() {
    if (redrawing) return;
    redrawing = true;
    setTimeout(function () {
      fetch(base + "/graph", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (svg) {
          if (svg) document.getElementById("graph").innerHTML = svg;
          redrawing = false;
        }, function () { redrawing = false; });
    }, 250);
  }

  // A step the page did not know (it started after the page was drawn): a new row in the
  // table and a new log tail, at the next position (the server numbers steps by position).
  function addRow(label) {
    var body = document.querySelector("#steps tbody");
    var n = body.rows.length;
    var row = body.insertRow();
    row.dataset.step = n;
    row.dataset.label = label;
    for (var i = 0; i < 9; i++) row.insertCell();
    row.cells[0].textContent = label;
    row.cells[1].innerHTML = '<span class="status"></span>';
    row.cells[2].textContent = "1";
    row.cells[2].className = row.cells[3].className = "num";
    row.cells[4].className = row.cells[5].className = "num";
    var details = document.createElement("details");
    details.open = true;
    var summary = document.createElement("summary");
    summary.textContent = label;
    var pre = document.createElement("pre");
    pre.className = "log";
    pre.id = "log-" + n;
    pre.dataset.step = n;
    pre.dataset.label = label;
    pre.dataset.offset = "0";
    details.appendChild(summary);
    details.appendChild(pre);
    live.parentNode.insertBefore(details, live);
    return row;
  }

  // A step's tokens and dollars from a usage update (its running totals) or its final usage.
  function spent(row, u) {
    if (!row || !u || !u.tokens) return;
    var t = u.tokens;
    var n = (t.input || 0) + (t.output || 0) + (t.cache_read || 0) + (t.cache_creation || 0);
    row.children[4].textContent = tokens(n);
    if (typeof u.cost_usd === "number") row.children[5].textContent = usd(u.cost_usd);
  }

  // As the server writes them: thousands apart by a narrow space; cents, or four places below.
  function tokens(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }
  function usd(v) {
    return "$" + (v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(4) : v.toFixed(2));
  }

  // A started step's link to its whole log (a fan-out's expansion step never starts: no log).
  function linkLog(label) {
    var row = rowOf(label);
    if (!row || row.cells[7].firstChild) return;
    var link = document.createElement("a");
    link.href = base + "/steps/" + encodeURIComponent(label) + "/log";
    link.textContent = "whole log";
    row.cells[7].appendChild(link);
  }

  // A step's log: new lines from the offset the page was rendered at.
  function follow(step) {
    if (tails[step]) return;
    var pre = document.getElementById("log-" + step);
    if (!pre) return;
    var from = pre.dataset.offset || "0";
    var label = pre.dataset.label;
    var es = new EventSource(base + "/steps/" + encodeURIComponent(label) + "/tail?from=" + from);
    tails[step] = es;
    es.addEventListener("log", function (e) {
      pre.textContent += e.data + "\n";
      pre.dataset.offset = e.lastEventId;
      pre.scrollTop = pre.scrollHeight;
    });
    es.addEventListener("end", function () { es.close(); });
  }

  document.querySelectorAll("#steps tbody tr").forEach(function (row) {
    if (row.querySelector(".status.running")) follow(row.dataset.step);
  });

  var events = new EventSource(base + "/events?from=" + (live.dataset.offset || "0"));
  events.addEventListener("orch", function (e) {
    var ev = JSON.parse(e.data);
    switch (ev.event) {
      case "step_started": setStatus(ev.label, "running"); linkLog(ev.label); break;
      case "usage_recorded": spent(rowOf(ev.label), ev.update); break;
      case "budget_updated":
        // The run's scope: what the whole run spent so far.
        if (ev.kind === "run") {
          document.getElementById("run-tokens").textContent = tokens(ev.tokens_used);
          document.getElementById("run-usd").textContent = usd(ev.usd_used);
        }
        break;
      case "step_finished":
        setStatus(ev.label, ev.status);
        var row = rowOf(ev.label);
        if (row) row.children[3].textContent = ev.duration.toFixed(1) + "s";
        if (ev.usage) spent(row, ev.usage);
        break;
      case "step_skipped": setStatus(ev.label, ev.status); break;
      case "run_finished": runStatus(ev.failed > 0 ? "failed" : "completed"); break;
    }
  });

  function runStatus(status) {
    var s = document.getElementById("run-status");
    s.textContent = status;
    s.className = "status " + status;
  }

  // The run ended: its status as the ledger has it (also when its run_finished was not in the
  // events file yet as the stream looked, or never, its orch killed); otherwise the page stays
  // as it is (a reload shows the final tokens and dollars).
  events.addEventListener("end", function (e) {
    events.close();
    var end = {};
    try { end = JSON.parse(e.data); } catch (err) { /* an older server's end: no status */ }
    if (end.status && end.status !== "running") runStatus(end.status);
  });
})();
