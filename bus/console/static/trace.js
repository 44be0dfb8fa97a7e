// Trace: one envelope's hops as a timeline (GET /admin/trace/{id}); a search by idempotency
// key or correlation id first finds the envelope ids (GET /admin/trace?key=|correlation=).
"use strict";

(() => {
  const { api, el, clear, showError, $, param } = esb;

  function detailText(d) {
    return Object.entries(d || {}).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join("  ");
  }

  async function showTrace(id) {
    const since = $("#since").value;
    const body = await api("GET", `/admin/trace/${encodeURIComponent(id)}?since=${encodeURIComponent(since)}`);
    const events = body.events || [];
    const t0 = events.length ? new Date(events[0].at).getTime() : 0;
    const tEnd = events.length ? new Date(events[events.length - 1].at).getTime() : 0;
    const span = Math.max(1, tEnd - t0);
    $("#result").hidden = false;
    $("#trace-id").textContent = body.id;
    $("#trace-summary").textContent = `${events.length} step(s) over ${(tEnd - t0).toFixed(0)} ms`;
    const list = clear($("#timeline"));
    for (const e of events) {
      const t = new Date(e.at).getTime() - t0;
      const lat = e.detail && (e.detail.latency_ms ?? e.detail.duration_ms);
      const bar = el("div", { class: "bar" });
      bar.style.marginLeft = `${(100 * t / span).toFixed(2)}%`;
      if (typeof lat === "number") bar.style.width = `${Math.max(0.5, 100 * lat / span).toFixed(2)}%`;
      list.append(el("li", { class: `hop step-${e.step}`, dataset: { step: e.step } },
        el("span", {}, `+${t.toFixed(1)} ms`),
        el("span", { class: `step-${e.step}` }, e.step),
        el("span", { class: "muted" }, e.instance),
        el("div", {}, el("div", { class: "wrap" }, detailText(e.detail),
          typeof lat === "number" ? `  (${lat.toFixed(1)} ms)` : ""), bar)));
    }
  }

  async function search(ev) {
    if (ev) ev.preventDefault();
    const by = $("#by").value, q = $("#q").value.trim();
    const out = clear($("#matches"));
    showError($("#error"), null);
    $("#result").hidden = true;
    if (!q) { showError($("#error"), { problem: { title: "Nothing to search for",
      detail: "type an envelope id, an idempotency key or a correlation id" } }); return; }
    try {
      if (by === "id") { await showTrace(q); return; }
      const found = await api("GET", `/admin/trace?${by}=${encodeURIComponent(q)}&since=${encodeURIComponent($("#since").value)}`);
      if (!found.ids.length) {
        showError($("#error"), { problem: { title: "Not found",
          detail: `no envelope was accepted with that ${by === "key" ? "idempotency key" : "correlation id"} in the last ${$("#since").value}` } });
        return;
      }
      out.append(el("p", {}, `${found.ids.length} envelope(s):`), el("ul", {}, found.ids.map((id) =>
        el("li", {}, el("a", { href: "#", class: "match", onclick: (e) => { e.preventDefault();
          showTrace(id).catch((err) => showError($("#error"), err, "Trace failed")); } }, id)))));
      await showTrace(found.ids[0]);
    } catch (err) { showError($("#error"), err, "Trace failed"); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#search").addEventListener("submit", search);
    if (param("id")) { $("#q").value = param("id"); search(); }
  });
})();
