// headrace's pages are rendered on the server; this only keeps a live page fresh.
// While a page shows a Running run (body[data-live]), it is fetched again every
// second and its <main> swapped in whole: nothing recorded is ever parsed as
// markup here that the server did not escape, and nothing is set but textContent
// and the server's own page.
(function () {
  "use strict";
  if (!document.body.dataset.live) return;
  function refresh() {
    fetch(window.location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelector("main");
        if (fresh) document.querySelector("main").replaceWith(fresh);
        if (page.body.dataset.live) setTimeout(refresh, 1000);
        else delete document.body.dataset.live;
      })
      .catch(function () { setTimeout(refresh, 2000); });
  }
  setTimeout(refresh, 1000);
})();
