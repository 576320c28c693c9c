// Live progress: every element with data-progress-for="<task id>" is updated once a
// second from /runs/progress/ until its run finishes. No reload, no external library.
(function () {
  var url = document.body.getAttribute("data-progress-url");
  var reloadWhenDone = document.body.hasAttribute("data-reload-when-done");
  // Units and words in the page's language, from <body data-text-*> (base.html).
  function said(name, fallback, values) {
    var text = document.body.getAttribute("data-text-" + name) || fallback;
    Object.keys(values).forEach(function (key) { text = text.split("{" + key + "}").join(values[key]); });
    return text;
  }
  function nodes() { return Array.prototype.slice.call(document.querySelectorAll("[data-progress-for]")); }
  function format(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 90) { return said("sec", "{n} s", {n: Math.round(seconds)}); }
    return said("min", "{n} min", {n: Math.round(seconds / 60)});
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
        if (p.rate) { parts.push(said("rate", "{rate} items/s", {rate: p.rate.toFixed(2)})); }
        if (p.eta_seconds !== null && !info.finished) { parts.push(said("eta", "about {time} left", {time: format(p.eta_seconds)})); }
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

// Live dashboard: #dashboard-live[data-live-url] is fetched again every data-live-seconds
// while the tab is visible, and #live-age says how old its figures are (or that they are
// stale when a fetch fails). Without JavaScript the page reloads itself (<noscript> refresh).
(function () {
  var box = document.getElementById("dashboard-live");
  var url = box && box.getAttribute("data-live-url");
  if (!url) { return; }
  var seconds = Math.max(2, parseInt(box.getAttribute("data-live-seconds"), 10) || 5);
  var age = document.getElementById("live-age");
  var note = document.querySelector("#dashboard-status .reload-note");
  if (note) { note.hidden = true; }
  var updated = Date.now();
  var failed = false;
  var timer = null;
  var busy = false;
  function showAge() {
    if (!age) { return; }
    var s = Math.max(0, Math.round((Date.now() - updated) / 1000));
    var text = age.getAttribute(failed ? "data-text-stale" : "data-text-fresh") || "";
    age.textContent = text.replace("%(age)s", String(s));
    age.classList.toggle("stale", failed);
  }
  function schedule(delay) {
    window.clearTimeout(timer);
    if (document.visibilityState !== "hidden") { timer = window.setTimeout(refresh, delay); }
  }
  function refresh() {
    if (busy) { return; }
    busy = true;
    var controller = window.AbortController ? new AbortController() : null;
    var abort = controller ? window.setTimeout(function () { controller.abort(); }, 8000) : null;
    fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}, redirect: "error",
                signal: controller ? controller.signal : undefined})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) { box.innerHTML = html; updated = Date.now(); failed = false; })
      .catch(function () { failed = true; })
      .finally(function () { window.clearTimeout(abort); busy = false; showAge(); schedule(seconds * 1000); });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { window.clearTimeout(timer); } else { schedule(0); }
  });
  window.setInterval(showAge, 1000);
  showAge();
  schedule(seconds * 1000);
})();

// Menu button (narrow screens): keep aria-expanded in step with the checkbox that opens the menu.
(function () {
  var toggle = document.getElementById("nav-toggle");
  if (!toggle) { return; }
  function sync() { toggle.setAttribute("aria-expanded", toggle.checked ? "true" : "false"); }
  toggle.addEventListener("change", sync);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && toggle.checked) { toggle.checked = false; sync(); }
  });
  sync();
})();
