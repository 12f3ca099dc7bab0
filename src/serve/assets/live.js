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
    var row = rowOf(label);
    if (!row) { location.reload(); return; }
    var cell = row.querySelector(".status");
    cell.className = "status " + status;
    cell.textContent = status;
    var box = document.querySelector('#graph g[data-step="' + row.dataset.step + '"]');
    if (box) box.setAttribute("class", "step " + status);
    if (status === "running") follow(row.dataset.step);
  }

  // A step's log: new lines from the offset the page was rendered at.
  function follow(step) {
    if (tails[step]) return;
    var pre = document.getElementById("log-" + step);
    if (!pre) return;
    var from = pre.dataset.offset || "0";
    var es = new EventSource(base + "/steps/" + step + "/tail?from=" + from);
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
      case "step_started": setStatus(ev.label, "running"); break;
      case "step_finished":
      case "step_skipped": setStatus(ev.label, ev.status); break;
      case "run_finished":
        var s = document.getElementById("run-status");
        s.textContent = "finished";
        s.className = "status completed";
        break;
    }
  });
  events.addEventListener("end", function () {
    events.close();
    // The run ended: the finished page has the final figures.
    setTimeout(function () { location.reload(); }, 500);
  });
})();
