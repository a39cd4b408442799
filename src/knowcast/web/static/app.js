/* knowcast dashboard: charts from embedded JSON, local times, the viewer's time zone, CSRF for fetch. */
(function () {
  "use strict";
  function getCookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  // The server buckets days in the viewer's time zone once it knows the offset (minutes east of UTC).
  const off = -new Date().getTimezoneOffset();
  if (getCookie("kc_tz") !== String(off)) {
    document.cookie = "kc_tz=" + off + "; path=/; SameSite=Lax; max-age=31536000";
  }
  const lang = document.documentElement.lang || "en";
  const fmts = {
    date: new Intl.DateTimeFormat(lang, { year: "numeric", month: "2-digit", day: "2-digit" }),
    time: new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    datetime: new Intl.DateTimeFormat(lang, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    }),
  };
  function formatTimes(root) {
    (root || document).querySelectorAll("time[data-ts]").forEach(function (el) {
      const ms = Number(el.dataset.ts);
      if (!isFinite(ms)) return;
      const d = new Date(ms);
      el.textContent = (fmts[el.dataset.fmt] || fmts.datetime).format(d);
      el.setAttribute("datetime", d.toISOString());
    });
  }
  const plotConfig = { displaylogo: false, responsive: true };
  function drawCharts(root) {
    if (!window.Plotly) return;
    (root || document).querySelectorAll(".plot[data-figure-id]").forEach(function (div) {
      const src = document.getElementById(div.dataset.figureId);
      if (!src) return;
      const fig = JSON.parse(src.textContent);
      window.Plotly.newPlot(div, fig.data, fig.layout, plotConfig);
      div.dataset.drawn = "1";
    });
  }
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  function fetchJSON(url, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "X-CSRF-Token": csrf, Accept: "application/json" }, opts.headers || {});
    opts.credentials = "same-origin";
    return fetch(url, opts).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; });
    });
  }
  window.kc = { getCookie: getCookie, formatTimes: formatTimes, drawCharts: drawCharts, csrf: csrf,
    fetchJSON: fetchJSON, fmts: fmts, lang: lang };
  formatTimes(document);
  drawCharts(document);
})();
