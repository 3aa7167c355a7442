// Small inline SVG charts, drawn here: no chart library, nothing loaded from elsewhere.
// Every chart scales with its container (viewBox) and carries <title> tooltips per point.

import {h, svg} from "./dom.js";

const WIDTH = 600;
const HEIGHT = 170;
const PAD = {left: 46, right: 10, top: 12, bottom: 24};

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function axis(maximum, format, labels) {
  const parts = [];
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotHeight * (1 - fraction);
    parts.push(svg("line", {x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid"}));
    parts.push(svg("text", {x: PAD.left - 6, y: y + 4, class: "tick", "text-anchor": "end"},
      format(maximum * fraction)));
  }
  const count = labels.length;
  const positions = count > 2 ? [0, Math.floor((count - 1) / 2), count - 1] : [...Array(count).keys()];
  for (const index of positions) {
    const x = PAD.left + (WIDTH - PAD.left - PAD.right) * (index + 0.5) / count;
    parts.push(svg("text", {x, y: HEIGHT - 6, class: "tick", "text-anchor": "middle"}, labels[index]));
  }
  return parts;
}

/**
 * A chart of one or more series over the same labels.
 * series: [{name, values, kind: "bar" | "line", className}]; bars of several series are grouped.
 * options: {format (y labels and tooltips), title (aria label), empty (text when nothing to show)}.
 */
export function chart(labels, series, options = {}) {
  const format = options.format || ((value) => String(Math.round(value * 100) / 100));
  const values = series.flatMap((item) => item.values).filter((value) => Number.isFinite(value));
  if (!labels.length || !values.length) return h("p", {class: "note"}, options.empty || "no data yet");
  const maximum = niceMax(Math.max(...values));
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotWidth / labels.length;
  const y = (value) => PAD.top + plotHeight * (1 - Math.max(0, value) / maximum);
  const bars = series.filter((item) => item.kind !== "line");
  const lines = series.filter((item) => item.kind === "line");
  const barWidth = Math.max(1, (slot * 0.8) / Math.max(1, bars.length));
  const shapes = [];
  bars.forEach((item, seriesIndex) => {
    item.values.forEach((value, index) => {
      if (!Number.isFinite(value)) return;
      const x = PAD.left + slot * index + slot * 0.1 + barWidth * seriesIndex;
      shapes.push(svg("rect", {x, y: y(value), width: barWidth, height: Math.max(0, PAD.top + plotHeight - y(value)),
        class: `series ${item.className || ""}`}, svg("title", null, `${labels[index]}: ${item.name} ${format(value)}`)));
    });
  });
  for (const item of lines) {
    const points = item.values.map((value, index) => [PAD.left + slot * (index + 0.5), value, index])
      .filter(([, value]) => Number.isFinite(value));
    shapes.push(svg("polyline", {points: points.map(([x, value]) => `${x.toFixed(1)},${y(value).toFixed(1)}`).join(" "),
      class: `line ${item.className || ""}`}));
    for (const [x, value, index] of points) {
      shapes.push(svg("circle", {cx: x, cy: y(value), r: 3, class: `dot ${item.className || ""}`},
        svg("title", null, `${labels[index]}: ${item.name} ${format(value)}`)));
    }
  }
  const picture = svg("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img",
    "aria-label": options.title || series.map((item) => item.name).join(", ")},
  axis(maximum, format, labels), shapes);
  const legend = series.length > 1 ? h("div", {class: "legend"}, series.map((item) =>
    h("span", null, h("i", {class: `swatch ${item.className || ""}`}), item.name))) : null;
  return h("figure", {class: "figure"}, options.title ? h("figcaption", null, options.title) : null, picture, legend);
}

/** A bar from 0 to `maximum` showing `value`: a trust score, a rating. */
export function gauge(value, maximum, label) {
  const width = 200;
  const filled = Math.max(0, Math.min(1, value / maximum)) * width;
  const level = value / maximum >= 0.7 ? "good" : value / maximum >= 0.4 ? "fair" : "poor";
  return h("span", {class: "gauge"},
    svg("svg", {viewBox: `0 0 ${width} 10`, class: "gauge-bar", role: "img", "aria-label": `${label} ${value} of ${maximum}`},
      svg("rect", {x: 0, y: 0, width, height: 10, rx: 5, class: "gauge-back"}),
      svg("rect", {x: 0, y: 0, width: filled, height: 10, rx: 5, class: `gauge-fill ${level}`})),
    h("b", null, `${value}`), h("span", {class: "muted"}, ` / ${maximum}`));
}

/** Filled and empty stars for an average rating ×100 (R20's avg_rating_x100). */
export function stars(averageX100, count) {
  const full = Math.round(averageX100 / 100);
  return h("span", {class: "stars", title: `${(averageX100 / 100).toFixed(2)} of 5 from ${count} rating(s)`},
    h("span", {class: "on"}, "★".repeat(full)), h("span", {class: "off"}, "★".repeat(5 - full)),
    ` ${(averageX100 / 100).toFixed(2)} (${count})`);
}

/** One row of cells per validator, one cell per block: signed or not (validators page). */
export function signingGrid(validators, heights, signed) {
  const cell = 14;
  const gap = 3;
  const width = heights.length * (cell + gap);
  return validators.map((validator) => svg("svg", {viewBox: `0 0 ${Math.max(width, 1)} ${cell}`, class: "signing",
    width: Math.max(width, 1), height: cell, role: "img",
    "aria-label": `signatures of ${validator} in the last ${heights.length} blocks`},
  heights.map((height, index) => {
    const state = signed(validator, height);
    return svg("rect", {x: index * (cell + gap), y: 0, width: cell, height: cell, rx: 2, class: `sig ${state}`},
      svg("title", null, `block ${height}: ${state === "yes" ? "signed" : state === "no" ? "not in the commit" : "no commit stored"}`));
  })));
}
