// headrace's pages are rendered on the server; this only keeps a live page fresh.
// A run page of a Running run (body[data-events]) listens to the run's server-sent
// events and fetches the page again on each change; the runs list (body[data-live])
// is fetched again every second while it shows a Running run. Either way the
// server's own escaped <main> is swapped in whole: nothing recorded is ever made
// markup here.
(function () {
  "use strict";
  var body = document.body;
  function swap(then) {
    return fetch(window.location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelector("main");
        if (fresh) document.querySelector("main").replaceWith(fresh);
        if (then) then(page);
      });
  }
  if (body.dataset.events && window.EventSource) {
    var source = new EventSource(body.dataset.events);
    source.addEventListener("change", function () { swap(); });
    source.addEventListener("end", function () { source.close(); swap(); });
    return;
  }
  if (!body.dataset.live) return;
  function poll() {
    swap(function (page) { if (page.body.dataset.live) setTimeout(poll, 1000); })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
