// Overview: instances, destinations (live), charts of the last minutes. Everything comes
// from GET /admin/status and GET /admin/stats.
"use strict";

(() => {
  const { api, el, fill, showError, num, uptime, $ } = esb;
  const WINDOW = 15 * 60;

  function state(s) { return [s || "–", { class: `state-${s}` }]; }

  function renderInstances(status) {
    fill($("#instances tbody"), (status.instances || []).map((i) => [
      [i.instance + (i.self ? " (this one)" : ""), { class: "wrap" }], i.host || "–",
      i.version || "–", state(i.state), i.started_at ? uptime(i.started_at) : "–",
      [num(i.route_version, 0), { class: "num" }],
      i.bus_connected ? "connected" : ["lost", { class: "state-open" }],
      [`${num(i.last_seen_s, 1)} s`, { class: "num" }]]), "no instance");
    const b = status.bus || {};
    $("#bus-line").textContent = `Bus: ${b.kind || "?"} (${b.connected ? "connected"
      : "NOT connected"}${b.durable ? "" : ", not durable"}); route set version ` +
      `${status.routes ? status.routes.version : "?"} with ${status.routes ? status.routes.count : "?"} routes.`;
    const q = status.queues || {};
    $("#retrying").textContent = num(q.retrying, 0);
    $("#dlq-size").textContent = num(q.dlq, 0);
    $("#unroutable-size").textContent = num(q.unroutable, 0);
  }

  function renderDestinations(status, latest) {
    const dests = status.destinations || {};
    const fleet = (latest && latest.destinations) || {};
    fill($("#destinations tbody"), Object.keys(dests).sort().map((name) => {
      const d = dests[name], f = fleet[name] || {};
      const cell = (v, cls, digits) => el("td", { class: `num ${cls}` }, num(v, digits));
      return el("tr", { dataset: { dest: name } },
        el("td", { class: "name" }, name), el("td", {}, d.adapter || "–"),
        cell(f.delivered_per_s, "delivered", 2), cell(f.failed_per_s, "failed", 2),
        cell(f.dead_lettered_per_s, "dead-lettered", 2), cell(f.retried_per_s, "retried", 2),
        cell(f.p50_ms, "p50", 1), cell(f.p90_ms, "p90", 1), cell(f.p99_ms, "p99", 1),
        cell(d.queue, "queue", 0), cell(f.in_flight !== undefined ? f.in_flight : d.in_flight,
          "in-flight", 0),
        el("td", { class: `breaker state-${f.breaker || d.breaker}` }, f.breaker || d.breaker || "–"));
    }), "no destination configured");
  }

  function renderCharts(samples, names) {
    const series = (field) => names.map((name) => ({ name, points: samples.map((s) => {
      const d = s.destinations[name];
      const v = d ? d[field] : null;
      return [s.at, typeof v === "number" ? v : null];
    }) }));
    esbChart.draw($("#chart-rates"), $("#legend-rates"), series("delivered_per_s"),
                  { window: WINDOW, unit: "/s" });
    esbChart.draw($("#chart-latency"), $("#legend-latency"), series("p99_ms"),
                  { window: WINDOW, unit: "" });
  }

  async function refresh() {
    try {
      const [status, stats] = await Promise.all([api("GET", "/admin/status"),
                                                 api("GET", "/admin/stats?minutes=15")]);
      const samples = stats.samples || [];
      renderInstances(status);
      renderDestinations(status, samples[samples.length - 1]);
      renderCharts(samples, Object.keys(status.destinations || {}).sort());
      $("#updated").textContent = new Date().toLocaleTimeString();
      showError($("#error"), null);
    } catch (err) {
      showError($("#error"), err, "Could not refresh");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    setInterval(refresh, 3000);
  });
})();
