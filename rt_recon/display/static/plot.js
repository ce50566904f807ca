// A small canvas line plot: x = TR, y linear or log10, series, horizontal reference lines.

const AXIS = "#8a949e";
const GRID = "#2e353d";

function niceStep(span, target) {
  const raw = span / target;
  const base = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * base >= raw) return m * base;
  return 10 * base;
}

function formatTick(value) {
  if (value >= 1000) return `${value / 1000}k`;
  if (value >= 1) return String(+value.toFixed(2));
  return String(+value.toPrecision(2));
}

/**
 * Draw into `canvas` (sized by CSS; the bitmap follows devicePixelRatio).
 * options: series [{name, color, points: [[x, y]], width, dots, line}] (line: false draws the
 * dots alone), lines [{y, color, label, dash}],
 * log (bool), yMin, yMax, xMin, xMax, empty (text when there is nothing to draw).
 */
export function linePlot(canvas, options) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (width === 0 || height === 0) return;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";

  const points = options.series.flatMap((s) => s.points);
  if (points.length === 0) {
    ctx.fillStyle = AXIS;
    ctx.textAlign = "center";
    ctx.fillText(options.empty ?? "no data yet", width / 2, height / 2);
    return;
  }
  const left = 44;
  const right = 10;
  const top = 10;
  const bottom = 22;
  const xMin = options.xMin ?? Math.min(...points.map((p) => p[0]));
  const xMax = Math.max(options.xMax ?? Math.max(...points.map((p) => p[0])), xMin + 1);
  const log = Boolean(options.log);
  const f = log ? (v) => Math.log10(Math.max(v, 1e-6)) : (v) => v;
  const yLo = f(options.yMin);
  const yHi = f(options.yMax);
  const px = (x) => left + ((x - xMin) / (xMax - xMin)) * (width - left - right);
  const py = (y) => top + (1 - (f(y) - yLo) / (yHi - yLo)) * (height - top - bottom);

  // grid and y ticks
  ctx.strokeStyle = GRID;
  ctx.fillStyle = AXIS;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const yTicks = [];
  if (log) {
    for (let e = Math.ceil(yLo); e <= Math.floor(yHi); e++) yTicks.push(10 ** e);
  } else {
    const step = niceStep(options.yMax - options.yMin, 4);
    for (let v = Math.ceil(options.yMin / step) * step; v <= options.yMax + 1e-9; v += step)
      yTicks.push(v);
  }
  for (const v of yTicks) {
    const y = py(v);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width - right, y);
    ctx.stroke();
    ctx.fillText(formatTick(v), left - 4, y);
  }
  // x ticks (TR)
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const xStep = Math.max(1, niceStep(xMax - xMin, 6));
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax; x += xStep) {
    ctx.fillText(String(x), px(x), height - bottom + 5);
  }
  ctx.textAlign = "left";
  ctx.fillText("TR", width - right - 14, height - bottom + 5);

  // reference lines
  for (const line of options.lines ?? []) {
    if (!(line.y > 0) && log) continue;
    const y = py(Math.min(Math.max(line.y, options.yMin), options.yMax));
    ctx.save();
    ctx.strokeStyle = line.color;
    ctx.globalAlpha = line.alpha ?? 0.8;
    ctx.lineWidth = line.width ?? 1;
    ctx.setLineDash(line.dash ?? [5, 4]);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(width - right, y);
    ctx.stroke();
    if (line.label) {
      ctx.setLineDash([]);
      ctx.fillStyle = line.color;
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      ctx.fillText(line.label, width - right - 2, y - 1);
    }
    ctx.restore();
  }

  // series
  ctx.save();
  ctx.beginPath();
  ctx.rect(left, top, width - left - right, height - top - bottom);
  ctx.clip();
  for (const s of options.series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = s.width ?? 1.5;
    if (s.line !== false) {
      ctx.beginPath();
      let previous = null;
      for (const [x, y] of s.points) {
        if (previous !== null && x - previous === 1) ctx.lineTo(px(x), py(y));
        else ctx.moveTo(px(x), py(y)); // a gap in TRs breaks the line
        previous = x;
      }
      ctx.stroke();
    }
    if (s.dots) {
      for (const [x, y] of s.points) {
        ctx.beginPath();
        ctx.arc(px(x), py(y), 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  ctx.restore();
}
