// A small SVG line chart for the overview (a few series over the last minutes). Written
// here rather than vendored: ~80 lines cover what the page needs.
"use strict";

const esbChart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2458c6", "#d9480f", "#2b8a3e", "#ae3ec9", "#0b7285", "#e67700",
                  "#c2255c", "#5c940d", "#1864ab", "#862e9c"];
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const nice = (max) => {
    if (!(max > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    return [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= max) || max;
  };

  /** series: [{name, points: [[unixSeconds, value|null], ...]}]; opts: {window, unit}. */
  function draw(svg, legend, series, opts) {
    const W = 600, H = 220, L = 48, R = 10, T = 10, B = 24;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const now = Date.now() / 1000, span = opts.window || 900, t0 = now - span;
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
    const top = nice(max);
    const x = (t) => L + (W - L - R) * (t - t0) / span;
    const y = (v) => T + (H - T - B) * (1 - v / top);
    for (let i = 0; i <= 4; i++) {
      const v = top * i / 4;
      svg.append(node("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.append(node("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" },
        `${+v.toPrecision(3)}${opts.unit || ""}`));
    }
    for (let m = 0; m <= span / 60; m += Math.max(1, Math.round(span / 300))) {
      const t = now - m * 60;
      svg.append(node("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, m ? `-${m}m` : "now"));
    }
    svg.append(node("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    svg.append(node("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    if (legend) while (legend.firstChild) legend.removeChild(legend.firstChild);
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      let d = "", pen = false, last = null;
      for (const [t, v] of s.points) {
        if (v === null || t < t0) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
        pen = true;
        last = [t, v];
      }
      if (d) svg.append(node("path", { d, fill: "none", stroke: color, "stroke-width": 2,
                                       "data-series": s.name }));
      if (last) svg.append(node("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: color }));
      if (legend) {
        const item = document.createElement("span");
        item.style.setProperty("--c", color);
        item.textContent = s.name;
        legend.append(item);
      }
    });
  }

  return { draw };
})();
