// Installed adapters and transformers (GET /admin/plugins).
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const { api, fill, showError, $ } = esb;
  try {
    const p = await api("GET", "/admin/plugins");
    fill($("#adapters tbody"), p.adapters.map((a) => [a.name, a.directions, a.package, a.version,
      [a.summary, { class: "wrap" }]]), "none installed");
    fill($("#transformers tbody"), p.transformers.map((t) => [t.name, t.package, t.version,
      [t.summary, { class: "wrap" }]]), "none installed");
  } catch (err) { showError($("#error"), err, "Could not list the plugins"); }
});
