// Routes: the set in force, history, diff, deploy, rollback and the files' own tests, all
// through /admin/routes/...
"use strict";

(() => {
  const { api, el, clear, fill, showError, when, $ } = esb;
  let versions = [];

  async function load() {
    try {
      const [force, hist] = await Promise.all([api("GET", "/admin/routes"),
                                               api("GET", "/admin/routes/versions")]);
      versions = hist.versions || [];
      $("#in-force").textContent = `Version ${force.version} (${(force.digest || "").slice(0, 12)}), `
        + `${force.routes.length} route(s); this instance runs version ${hist.running ?? "–"}.`;
      fill($("#routes tbody"), force.routes.map((r) => [r.name, [String(r.priority), { class: "num" }],
        r.exclusive ? "yes" : "", (r.to || []).join(", ")]), "no routes");
      fill($("#history tbody"), versions.slice().reverse().map((v) => el("tr", { dataset: { version: v.version } },
        el("td", { class: "num" }, `v${v.version}`, v.rollback_of ? ` (rollback to v${v.rollback_of})` : ""),
        el("td", {}, when(v.deployed_at)), el("td", {}, v.deployed_by || "–"),
        el("td", { class: "wrap" }, v.note || ""), el("td", { class: "wrap" }, (v.files || []).join(", ")),
        el("td", {}, v.version === hist.running ? el("span", { class: "ok" }, "running")
          : el("button", { type: "button", class: "rollback-to", onclick: () => rollback(v.version) },
               `Roll back to v${v.version}`)))), "no versions stored");
      for (const [sel, pick] of [["#diff-a", -2], ["#diff-b", -1], ["#test-version", -1]]) {
        const box = $(sel), keep = box.value;
        clear(box);
        versions.forEach((v) => box.append(el("option", { value: v.version }, `v${v.version}`)));
        const dflt = versions[Math.max(0, versions.length + pick)];
        box.value = keep || (dflt ? String(dflt.version) : "");
      }
      showError($("#error"), null);
    } catch (err) { showError($("#error"), err, "Could not load the route set"); }
  }

  async function chosenFiles() {
    const input = $("#deploy-files");
    if (!input.files.length) throw new esb.ApiError(0, { title: "No files chosen",
      detail: "choose one or more route files (.yaml) first" });
    const files = {};
    for (const f of input.files) files[f.name] = await f.text();
    return files;
  }

  async function deploy() {
    const out = $("#deploy-result");
    clear(out);
    try {
      const files = await chosenFiles();
      const note = $("#deploy-note").value.trim();
      const v = await api("POST", "/admin/routes/deploy",
                          { files, by: "console", ...(note ? { note } : {}) });
      await load(); // the history shows the new version by the time the page says so
      out.append(el("p", { class: "ok", id: "deploy-ok" }, v.unchanged
        ? `Nothing to deploy: version ${v.version} has these files already.`
        : `Deployed version ${v.version}${v.running ? " — running" : ""}.`));
    } catch (err) { showError(out, err, "Deploy refused"); }
  }

  async function rollback(version) {
    const what = version ? `version ${version}` : "the previous version";
    if (!window.confirm(`Roll back to ${what}? It becomes a new version and runs at once.`)) return;
    const out = $("#deploy-result");
    clear(out);
    try {
      const v = await api("POST", "/admin/routes/rollback", { version: version || null, by: "console" });
      await load();
      out.append(el("p", { class: "ok", id: "rollback-ok" },
        `Rolled back: version ${v.version} (a copy of v${v.rollback_of}) is running.`));
    } catch (err) { showError(out, err, "Rollback refused"); }
  }

  function diffBlock(text) {
    const pre = el("pre", { class: "diff" });
    for (const line of text.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add"
        : line.startsWith("-") ? "del" : null;
      pre.append(cls ? el("span", { class: cls }, line) : document.createTextNode(line), "\n");
    }
    return pre;
  }

  async function diff() {
    const out = $("#diff-result");
    clear(out);
    try {
      const a = $("#diff-a").value, b = $("#diff-b").value;
      const d = await api("GET", `/admin/routes/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
      if (!d.files.length) { out.append(el("p", { class: "muted", id: "diff-none" }, `v${a} and v${b} are the same.`)); return; }
      for (const f of d.files) {
        out.append(el("h3", {}, `${f.name} (${f.status})`), diffBlock(f.diff));
      }
    } catch (err) { showError(out, err, "Diff failed"); }
  }

  function renderTests(out, result) {
    const summary = `${result.passed} passed, ${result.failed} failed`;
    out.append(el("p", { class: result.failed ? "error" : "ok", id: "tests-summary" },
      result.cases.length ? summary : "No tests: cases in these files."));
    const tbody = el("tbody");
    fill(tbody, result.cases.map((c) => [c.passed ? ["PASS", { class: "ok" }] : ["FAIL", { class: "state-open" }],
      c.name, c.where, [c.failures.join("\n"), { class: "wrap" }]]));
    if (result.cases.length) {
      out.append(el("table", {}, el("thead", {}, el("tr", {}, ["", "Case", "Where", "Failures"].map((h) => el("th", {}, h)))), tbody));
    }
  }

  async function runTests(body) {
    const out = $("#test-result");
    clear(out);
    out.append(el("p", { class: "muted" }, "Running…"));
    try {
      const result = await api("POST", "/admin/routes/test", body);
      clear(out);
      renderTests(out, result);
    } catch (err) { showError(out, err, "Tests could not run"); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#deploy").addEventListener("click", deploy);
    $("#rollback").addEventListener("click", () => rollback(null));
    $("#diff").addEventListener("click", diff);
    $("#run-tests").addEventListener("click", () => runTests({ version: Number($("#test-version").value) }));
    $("#test-files").addEventListener("click", async () => {
      try { await runTests({ files: await chosenFiles() }); }
      catch (err) { showError($("#test-result"), err, "Tests could not run"); }
    });
    load();
  });
})();
