// esb console: helpers every page shares. Data goes into the page as text (textContent),
// never as markup: nothing an envelope, an error or a route file says can run as code.
"use strict";

const esb = (() => {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || { title: `HTTP ${status}` };
    }
  }

  function headers(method, json) {
    const h = { Accept: "application/json" };
    if (method !== "GET" && method !== "HEAD") h["X-CSRF-Token"] = csrf();
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  async function raw(method, path, body) {
    const r = await fetch(path, { method, credentials: "same-origin",
      headers: headers(method, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) {
      window.location.assign("/console/login?expired=1");
      throw new ApiError(401, { title: "Session expired" });
    }
    return r;
  }

  /** Call the admin API; resolves with the JSON answer, rejects with an ApiError. */
  async function api(method, path, body) {
    const r = await raw(method, path, body);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { title: text }; }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  /** POST and read a JSON-lines answer, calling onLine for each line. */
  async function stream(path, body, onLine) {
    const r = await raw("POST", path, body);
    if (!r.ok) {
      let data = null;
      try { data = await r.json(); } catch (e) { data = null; }
      throw new ApiError(r.status, data);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
      if (done) break;
    }
  }

  /** el("td", {class: "num"}, "text", childNode, ...): strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  /** Show an error (an ApiError's problem+json, or any Error) in a box, visibly. */
  function showError(box, err, what) {
    clear(box);
    if (!err) { box.hidden = true; return; }
    const p = err.problem || { title: err.message || String(err) };
    const status = err.status ? ` (HTTP ${err.status})` : "";
    const head = (what ? what + ": " : "") + (p.title || "Error") + status;
    const div = el("div", { class: "error", role: "alert" }, el("strong", {}, head));
    if (p.detail) div.append(el("div", {}, p.detail));
    if (Array.isArray(p.errors) && p.errors.length) {
      div.append(el("ul", {}, p.errors.map((e) => el("li", {}, typeof e === "string" ? e
        : JSON.stringify(e)))));
    }
    box.append(div);
    box.hidden = false;
  }

  const num = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
    : Number(v).toFixed(digits);
  const when = (iso) => { if (!iso) return "–"; const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 19); };
  const uptime = (iso) => {
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (!Number.isFinite(s)) return "–";
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(s % 60)}s`;
  };

  /** Pretty text of a payload: JSON indented, XML re-indented, other text as is. */
  function pretty(data, contentType) {
    if (data === undefined || data === null) return "";
    if (typeof data !== "string") return JSON.stringify(data, null, 2);
    if (/xml/.test(contentType || "") || /^\s*</.test(data)) return prettyXml(data);
    return data;
  }

  function prettyXml(text) {
    try {
      const doc = new DOMParser().parseFromString(text, "application/xml");
      if (doc.getElementsByTagName("parsererror").length) return text;
      const out = [];
      const walk = (node, depth) => {
        const pad = "  ".repeat(depth);
        if (node.nodeType === Node.TEXT_NODE) {
          const t = node.nodeValue.trim(); if (t) out.push(pad + t); return;
        }
        if (node.nodeType !== Node.ELEMENT_NODE) return;
        const attrs = Array.from(node.attributes).map((a) => ` ${a.name}="${a.value}"`).join("");
        const kids = Array.from(node.childNodes).filter((c) => c.nodeType === Node.ELEMENT_NODE
          || (c.nodeType === Node.TEXT_NODE && c.nodeValue.trim()));
        if (!kids.length) { out.push(`${pad}<${node.nodeName}${attrs}/>`); return; }
        if (kids.length === 1 && kids[0].nodeType === Node.TEXT_NODE) {
          out.push(`${pad}<${node.nodeName}${attrs}>${kids[0].nodeValue.trim()}</${node.nodeName}>`);
          return;
        }
        out.push(`${pad}<${node.nodeName}${attrs}>`);
        kids.forEach((k) => walk(k, depth + 1));
        out.push(`${pad}</${node.nodeName}>`);
      };
      walk(doc.documentElement, 0);
      return out.join("\n");
    } catch (e) { return text; }
  }

  /** A table body from rows of cells (each cell: text, a Node, or [text, attrs]). */
  function fill(tbody, rows, empty) {
    clear(tbody);
    if (!rows.length && empty) {
      const cols = tbody.parentElement.querySelectorAll("thead th").length || 1;
      tbody.append(el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty)));
      return;
    }
    for (const row of rows) {
      const tr = row instanceof Node ? row : el("tr", {}, row.map((c) =>
        Array.isArray(c) ? el("td", c[1], c[0]) : el("td", {}, c)));
      tbody.append(tr);
    }
  }

  const $ = (sel) => document.querySelector(sel);
  const param = (name) => new URLSearchParams(window.location.search).get(name);

  return { api, stream, el, clear, showError, num, when, uptime, pretty, fill, $, param,
           ApiError };
})();
