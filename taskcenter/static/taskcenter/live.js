// Live progress: every element with data-progress-for="<task id>" is updated once a
// second from /runs/progress/ until its run finishes. No reload, no external library.
(function () {
  var url = document.body.getAttribute("data-progress-url");
  var reloadWhenDone = document.body.hasAttribute("data-reload-when-done");
  function nodes() { return Array.prototype.slice.call(document.querySelectorAll("[data-progress-for]")); }
  function format(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 90) { return Math.round(seconds) + " s"; }
    return Math.round(seconds / 60) + " min";
  }
  function update(node, info) {
    var badge = node.querySelector(".state");
    if (badge && info.state) { badge.textContent = info.state; badge.className = "state state-" + info.state.toLowerCase(); }
    var p = info.progress;
    var bar = node.querySelector(".progress-done");
    var text = node.querySelector(".progress-text");
    if (p) {
      var percent = info.state === "SUCCESS" ? 100 : p.percent;
      if (bar) { bar.style.width = percent + "%"; }
      node.querySelector(".progress").hidden = false;
      if (text) {
        var parts = [percent.toFixed(0) + "%"];
        if (p.done !== null && p.total !== null) { parts.push(p.done + " / " + p.total); }
        if (p.rate) { parts.push(p.rate.toFixed(2) + " items/s"); }
        if (p.eta_seconds !== null && !info.finished) { parts.push("ETA " + format(p.eta_seconds)); }
        if (p.message) { parts.push(p.message); }
        text.textContent = parts.join(" · ");
      }
    }
    if (info.finished) { node.removeAttribute("data-progress-for"); if (reloadWhenDone) { window.location.reload(); } }
  }
  function poll() {
    var list = nodes();
    if (!list.length || !url) { return; }
    var ids = list.map(function (n) { return n.getAttribute("data-progress-for"); });
    fetch(url + "?ids=" + encodeURIComponent(ids.join(",")), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (data) { list.forEach(function (n) { var i = data[n.getAttribute("data-progress-for")]; if (i) { update(n, i); } }); })
      .catch(function () {})
      .finally(function () { window.setTimeout(poll, 1000); });
  }
  if (nodes().length) { window.setTimeout(poll, 500); }
})();
