// Dead letters and unroutable envelopes: filter, show one (attempts, hops, payload), replay
// one/selected/all with progress, purge after a confirmation — through /admin/{dlq,unroutable}.
"use strict";

(() => {
  const { api, stream, el, clear, fill, showError, when, pretty, $, param } = esb;
  let items = [];

  const which = () => $("#which").value;
  const selected = () => Array.from(document.querySelectorAll("#letters tbody input:checked"))
    .map((c) => c.value);

  async function loadDestinations() {
    try {
      const status = await api("GET", "/admin/status");
      const box = $("#f-destination");
      for (const name of Object.keys(status.destinations || {}).sort()) {
        box.append(el("option", { value: name }, name));
      }
    } catch (err) { showError($("#error"), err, "Could not read the destinations"); }
  }

  async function load() {
    const q = new URLSearchParams({ limit: "500" });
    for (const [k, sel] of [["destination", "#f-destination"], ["error", "#f-error"], ["since", "#f-since"]]) {
      const v = $(sel).value.trim();
      if (v) q.set(k, v);
    }
    try {
      const body = await api("GET", `/admin/${which()}?${q}`);
      items = body.items || [];
      fill($("#letters tbody"), items.map((i) => el("tr", { dataset: { id: i.id } },
        el("td", {}, el("input", { type: "checkbox", value: i.id, "aria-label": `select ${i.id}`,
                                    onchange: updateButtons })),
        el("td", { class: "wrap" }, el("a", { href: "#", class: "show", onclick: (e) => { e.preventDefault(); show(i.id); } }, i.id)),
        el("td", { class: "wrap" }, i.type), el("td", {}, i.destination || "–"),
        el("td", {}, i.route || "–"), el("td", { class: "num" }, String(i.attempts)),
        el("td", { class: "wrap error-text" }, i.error || ""), el("td", {}, when(i.at)))),
        "nothing here");
      $("#count").textContent = `${items.length} shown`;
      updateButtons();
      showError($("#error"), null);
    } catch (err) { showError($("#error"), err, "Could not list"); }
  }

  function updateButtons() { $("#replay-selected").disabled = selected().length === 0; }

  function dl(box, pairs) {
    clear(box);
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === "") continue;
      box.append(el("dt", {}, k), el("dd", {}, typeof v === "string" ? v : JSON.stringify(v)));
    }
  }

  async function show(id) {
    try {
      const ev = await api("GET", `/admin/${which()}/${encodeURIComponent(id)}`);
      $("#detail").hidden = false;
      $("#detail-id").textContent = ev.id;
      $("#detail-trace").href = `/console/trace?id=${encodeURIComponent(ev.id)}`;
      dl($("#detail-attrs"), [["type", ev.type], ["source", ev.source], ["time", ev.time],
        ["subject", ev.subject], ["content type", ev.datacontenttype],
        ["entered through", ev.esbendpoint], ["route", ev.esbroute],
        ["route version", ev.esbrouteversion], ["destination", ev.esbdestination],
        ["idempotency key", ev.idempotencykey], ["correlation id", ev.correlationid]]);
      $("#detail-error").textContent = ev.esberror || "–";
      fill($("#attempts tbody"), (ev.esbattempts || []).map((a) => [when(a.at), a.destination,
        a.outcome, [a.status ?? "–", { class: "num" }], [esb.num(a.latency_ms, 1), { class: "num" }],
        [a.error || "", { class: "wrap" }]]), "no delivery attempts");
      fill($("#hops tbody"), (ev.esbhops || []).map((h) => [when(h.at), h.step, h.instance || "",
        [h.detail ? JSON.stringify(h.detail) : "", { class: "wrap" }]]), "no hops");
      dl($("#detail-headers"), Object.entries(ev.esbheaders || {}));
      $("#detail-payload").textContent = ev.data_base64 !== undefined
        ? `(binary, base64)\n${ev.data_base64}` : pretty(ev.data, ev.datacontenttype);
      $("#replay-one").onclick = () => replay({ ids: [ev.id] });
      $("#detail").scrollIntoView();
    } catch (err) { showError($("#error"), err, "Could not show the envelope"); }
  }

  async function replay(body) {
    const out = $("#action-result"), bar = $("#progress"), text = $("#progress-text");
    clear(out);
    bar.hidden = false; bar.value = 0; text.textContent = "starting…";
    let result = null;
    try {
      await stream(`/admin/${which()}/replay`, body, (line) => {
        if (line.total !== undefined) {
          bar.max = Math.max(1, line.total); bar.value = line.scanned;
          text.textContent = `scanned ${line.scanned} of ${line.total}`;
        } else result = line;
      });
      if (!result || result.error) {
        showError(out, { problem: { title: "Replay failed", detail: result ? result.error : "no result" } });
      } else {
        bar.value = bar.max;
        out.append(el("p", { class: "ok", id: "replay-done" },
          `Replayed ${result.replayed}; ${result.left} left in the queue.`));
      }
    } catch (err) { showError(out, err, "Replay refused"); }
    text.textContent = "";
    await load();
  }

  async function purge() {
    const name = which() === "dlq" ? "dead-letter" : "unroutable";
    if (!window.confirm(`Delete EVERY envelope in the ${name} queue? This cannot be undone.`)) return;
    const out = $("#action-result");
    clear(out);
    try {
      const r = await api("POST", `/admin/${which()}/purge`);
      out.append(el("p", { class: "ok", id: "purge-done" }, `Purged ${r.purged} envelope(s).`));
    } catch (err) { showError(out, err, "Purge refused"); }
    $("#detail").hidden = true;
    await load();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (param("queue") === "unroutable") $("#which").value = "unroutable";
    $("#which").addEventListener("change", () => { $("#detail").hidden = true; load(); });
    $("#apply").addEventListener("click", load);
    $("#select-all").addEventListener("change", (e) => {
      document.querySelectorAll("#letters tbody input[type=checkbox]").forEach((c) => { c.checked = e.target.checked; });
      updateButtons();
    });
    $("#replay-selected").addEventListener("click", () => replay({ ids: selected() }));
    $("#replay-all").addEventListener("click", () => {
      const dest = $("#f-destination").value;
      if (!window.confirm(`Replay all ${dest ? `dead letters of ${dest}` : "envelopes in this queue"}?`)) return;
      replay({ all: true, ...(dest ? { destination: dest } : {}) });
    });
    $("#purge").addEventListener("click", purge);
    await loadDestinations();
    await load();
    if (param("id")) show(param("id"));
  });
})();
