// The operator console: node health, TR counters, latency against budgets and the TR,
// motion, data quality (tSNR per ROI, global signal, DVARS), and the reconstructions beside
// the pictures that were shown.
// Every message is read through checked() (schema.js): the schema of the state and the
// picture meta is schema.json, generated from rt_recon/display/messages.py.
import { connect, drawFrame } from "/static/common.js";
import { linePlot } from "/static/plot.js";
import { checked, loadSchema } from "/static/schema.js";

const STAGE_COLORS = {
  lsl_transport: "#4e79a7",
  preprocess: "#f28e2b",
  decode: "#59a14f",
  zmq_latents: "#b07aa1",
  render: "#edc948",
  end_to_end: "#e15759",
};
const TR_COLOR = "#ff4d4d";
const ROI_COLORS = ["#58a6ff", "#3fb950", "#d2a8ff", "#f0883e", "#79c0ff"];
const GLOBAL_COLOR = "#edc948";
const STRIP_LENGTH = 8;

const $ = (selector) => document.querySelector(selector);
let latest = null; // the last console state

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2);
}

function describeNode(node) {
  const parts = [];
  if (node.age_s !== null) parts.push(`heard ${node.age_s.toFixed(1)} s ago`);
  if (node.volume_age_s !== null) parts.push(`last volume ${node.volume_age_s.toFixed(1)} s ago`);
  if (node.pid) parts.push(`pid ${node.pid}`);
  if (node.restarts) parts.push(`restarted ${node.restarts}×`);
  for (const key of ["tr", "volumes", "published", "rendered", "missed", "skipped_stale"]) {
    if (key in node.counters) parts.push(`${key} ${node.counters[key]}`);
  }
  return parts.join(" · ");
}

// What a node is doing, in words: its own state while it speaks, the console's view when it does not.
function levelText(node) {
  if (node.level === "unknown") return "not seen";
  if (node.level === "away" || node.level === "reconnecting") return node.level;
  return node.state.replaceAll("_", " ");
}

function showNodes(nodes) {
  const list = $("#nodes");
  list.replaceChildren(
    ...nodes.map((node) => {
      const item = element("li", { class: "node", "data-node": node.name, "data-level": node.level });
      item.append(
        element("span", { class: "dot" }),
        element("b", {}, node.name),
        element("span", { class: "state" }, levelText(node)),
        element("span", { class: "detail" }, describeNode(node)),
      );
      return item;
    }),
  );
}

// The volume stream (the bridge) and the marker stream, as cards like the nodes'.
function showSources(state) {
  const cards = [
    ["bridge", state.volume_source],
    ["markers", state.marker_source],
  ].filter(([, source]) => source !== null);
  $("#sources").replaceChildren(
    ...cards.map(([name, source]) => {
      const item = element("li", { class: "node", "data-node": name, "data-level": source.level });
      const found = source.level === "ok" ? "found" : source.level === "unknown" ? "looking" : "not found";
      item.append(
        element("span", { class: "dot" }),
        element("b", {}, name === "bridge" ? "volume stream" : "marker stream"),
        element("span", { class: "state" }, found),
        element("span", { class: "detail" }, source.text),
      );
      return item;
    }),
  );
}

function ordinal(n) {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  const suffix = teen ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] ?? "th";
  return `${n}${suffix}`;
}

// "run 8 · series 8 'func_run2' · 2nd run" (then "yoked feedback" in a yoked session)
function runText(state) {
  if (state.run === null) return "";
  const parts = [`run ${state.run}`];
  if (state.series !== null) {
    const description = state.series_description === null ? "" : ` '${state.series_description}'`;
    parts.push(`series ${state.series}${description}`);
  }
  if (state.runs > 0) parts.push(`${ordinal(state.runs)} run`);
  // sham / yoked feedback (docs/study-designs.md): a real run says nothing
  if (state.feedback === "yoked") parts.push("yoked feedback");
  if (state.feedback === "blinded") parts.push("feedback condition blinded");
  return parts.join(" · ");
}

function showCounts(state) {
  const set = (key, text, bad = false) => {
    const cell = $(`#counts [data-count="${key}"]`);
    cell.textContent = text;
    cell.classList.toggle("bad", bad);
  };
  set("tr", state.tr ?? "–");
  set("interval", state.interval_s ? `${(state.interval_s * 1000).toFixed(0)} ms` : "–");
  set("frames", String(state.counts.frames));
  for (const key of ["missed_trs", "late_trs", "skipped_trs", "no_picture_trs"]) {
    set(key, String(state.counts[key]), state.counts[key] > 0 && key !== "no_picture_trs");
  }
  // The run's alignment to the decoder bundle: "aligned to the bundle: 3.1 mm, 2.0 deg".
  const alignment = $("#alignment");
  alignment.textContent = state.alignment === null ? "aligned to the bundle: –" : state.alignment.text;
  alignment.dataset.level = state.alignment === null ? "unknown" : state.alignment.amber ? "amber" : "ok";
  document.body.dataset.tr = state.tr ?? "";
  $("#session").textContent = state.session ? `session ${state.session}` : "no session yet";
  $("#run").textContent = runText(state);
}

function showWarnings(warnings) {
  $("#warnings").replaceChildren(
    ...warnings.map((w) => element("li", { "data-kind": w.kind }, w.text)),
  );
}

function latencyPlot(state) {
  const series = state.stages
    .map((stage) => ({
      name: stage,
      color: STAGE_COLORS[stage] ?? "#ccc",
      width: stage === "end_to_end" ? 2.5 : 1.5,
      points: state.latency.filter((r) => stage in r.ms).map((r) => [r.tr, Math.max(r.ms[stage], 0.001)]),
    }))
    .filter((s) => s.points.length > 0);
  const lines = Object.entries(state.budgets_ms)
    .filter(([stage]) => series.some((s) => s.name === stage))
    .map(([stage, budget]) => ({ y: budget, color: STAGE_COLORS[stage] ?? "#ccc", alpha: 0.7 }));
  const trMs = state.interval_s ? state.interval_s * 1000 : null;
  if (trMs) lines.push({ y: trMs, color: TR_COLOR, label: `TR ${trMs.toFixed(0)} ms`, width: 2, dash: [] });
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const yMax = Math.max(...values, trMs ?? 0, 1) * 2;
  const yMin = Math.max(Math.min(...values, 1) / 2, 0.01);
  const trs = state.latency.map((r) => r.tr);
  linePlot($("#latency-plot"), {
    series,
    lines,
    log: true,
    yMin,
    yMax,
    xMin: Math.min(...trs),
    xMax: Math.max(...trs),
    empty: "no pictures yet",
  });
}

function latencyTable(state) {
  const rows = state.latency_summary.map((row) => {
    const over = state.counts.over_budget[row.stage] ?? 0;
    const late = row.budget_ms !== null && row.latest_ms > row.budget_ms;
    const tr = element("tr", { "data-stage": row.stage, class: late ? "over" : "" });
    const name = element("td");
    const swatch = element("span", { class: "swatch" });
    swatch.style.background = STAGE_COLORS[row.stage] ?? "#ccc";
    name.append(swatch, row.stage);
    tr.append(
      name,
      element("td", {}, ms(row.latest_ms)),
      element("td", {}, ms(row.p50_ms)),
      element("td", {}, ms(row.p95_ms)),
      element("td", {}, row.budget_ms === null ? "–" : ms(row.budget_ms)),
      element("td", {}, String(over)),
    );
    return tr;
  });
  $("#latency-table tbody").replaceChildren(...rows);
}

function motionPlot(state) {
  const { points, threshold_mm } = state.motion;
  const note = $("#motion-note");
  if (points.length === 0) {
    note.textContent = state.counts.frames
      ? "The frames carry no motion estimate (no fd in their headers)."
      : "";
  } else {
    const last = points[points.length - 1];
    note.textContent = `latest FD ${last[1].toFixed(2)} mm at TR ${last[0]}; threshold ${threshold_mm} mm`;
  }
  const yMax = Math.max(threshold_mm * 2, ...points.map((p) => p[1] * 1.2));
  const trs = state.latency.map((r) => r.tr);
  linePlot($("#motion-plot"), {
    series: [{ name: "fd", color: "#58a6ff", points, dots: true }],
    lines: [{ y: threshold_mm, color: TR_COLOR, label: `${threshold_mm} mm` }],
    yMin: 0,
    yMax,
    xMin: trs.length ? Math.min(...trs) : undefined,
    xMax: trs.length ? Math.max(...trs) : undefined,
    empty: state.counts.frames ? "no framewise displacement in the frames" : "no pictures yet",
  });
}

// The decoder's confidence per TR: the fraction of its null (the decoder's output on noise,
// fitted on the training runs) below the TR's decoded latents.
function confidencePlot(state) {
  const { points } = state.confidence;
  const note = $("#confidence-note");
  const last = points.length ? points[points.length - 1] : null;
  if (last === null) {
    note.textContent = state.counts.frames
      ? "The frames carry no confidence (a bundle fitted without one, or an older decoder)."
      : "";
  } else {
    note.textContent = `latest confidence ${last[1].toFixed(3)} at TR ${last[0]}`;
  }
  note.dataset.tr = last ? last[0] : "";
  note.dataset.value = last ? last[1] : "";
  const canvas = $("#confidence-plot");
  canvas.dataset.points = points.length;
  const trs = state.latency.map((r) => r.tr);
  linePlot(canvas, {
    series: [{ name: "confidence", color: "#d2a8ff", points, dots: true }],
    lines: [{ y: 0.5, color: "#6e7681", label: "0.5: noise's median" }],
    yMin: 0,
    yMax: 1,
    xMin: trs.length ? Math.min(...trs) : undefined,
    xMax: trs.length ? Math.max(...trs) : undefined,
    empty: state.counts.frames ? "no confidence in the frames" : "no pictures yet",
  });
}

function fixed(value, digits, unit = "") {
  return value === null || value === undefined ? "–" : `${value.toFixed(digits)}${unit}`;
}

// The latest value of each measure with its TR and threshold; a row turns red while over.
function qualityTable(state) {
  const quality = state.quality;
  const points = quality.points;
  const last = points.length ? points[points.length - 1] : null;
  const rows = [];
  const row = (key, name, value, text, limit, over, color = null) => {
    const tr = element("tr", { "data-measure": key, class: over ? "over" : "" });
    const label = element("td");
    if (color) {
      const swatch = element("span", { class: "swatch" }); // its colour in the plot below
      swatch.style.background = color;
      label.append(swatch);
    }
    label.append(name);
    tr.append(
      label,
      element("td", { "data-value": value ?? "" }, text),
      element("td", {}, last ? String(last.tr) : "–"),
      element("td", {}, limit),
    );
    rows.push(tr);
  };
  quality.rois.forEach((roi, i) => {
    const value = last ? last.tsnr[roi] ?? null : null;
    row(`tsnr-${roi}`, `tSNR ${roi}`, value, fixed(value, 1), `min ${quality.min_tsnr}`,
      value !== null && value < quality.min_tsnr, ROI_COLORS[i % ROI_COLORS.length]);
  });
  const change = last ? last.global_pct : null;
  const sign = change !== null && change > 0 ? "+" : "";
  row("global", "global signal", change, change === null ? "–" : `${sign}${change.toFixed(2)}%`,
    `±${quality.max_global_pct}%`, change !== null && Math.abs(change) > quality.max_global_pct,
    GLOBAL_COLOR);
  const z = last ? last.dvars_z : null;
  const dvars = last ? last.dvars_pct : null;
  row("dvars", "DVARS", z, `${fixed(dvars, 2, "%")} (z ${fixed(z, 1)})`, `z ${quality.max_dvars_z}`,
    z !== null && z > quality.max_dvars_z);
  $("#quality-table tbody").replaceChildren(...rows);
  const note = $("#quality-note");
  if (points.length === 0) {
    note.textContent = state.counts.frames ? "The frames carry no data quality (no quality in their headers)." : "";
  } else {
    note.textContent =
      `${quality.crossing_trs} of the last ${quality.stop_window_trs} TRs over a threshold ` +
      `(framewise displacement included); stop at ${quality.stop_after_trs}`;
  }
  note.dataset.crossing = quality.crossing_trs;
  $("#quality-window").textContent = `(tSNR and the global baseline over the last ${quality.window_trs} TRs)`;
  document.body.dataset.qualityTr = last ? last.tr : "";
}

function qualityPlots(state) {
  const quality = state.quality;
  const points = quality.points;
  const trs = state.latency.map((r) => r.tr);
  const xMin = trs.length ? Math.min(...trs) : undefined;
  const xMax = trs.length ? Math.max(...trs) : undefined;
  const empty = state.counts.frames ? "no data quality in the frames" : "no pictures yet";
  const tsnr = quality.rois.map((roi, i) => ({
    name: roi,
    color: ROI_COLORS[i % ROI_COLORS.length],
    points: points.filter((p) => (p.tsnr[roi] ?? null) !== null).map((p) => [p.tr, p.tsnr[roi]]),
  }));
  const tsnrValues = tsnr.flatMap((s) => s.points.map((p) => p[1]));
  const tsnrCanvas = $("#tsnr-plot");
  tsnrCanvas.dataset.points = tsnrValues.length;
  linePlot(tsnrCanvas, {
    series: tsnr,
    lines: [{ y: quality.min_tsnr, color: TR_COLOR, label: `min ${quality.min_tsnr}` }],
    yMin: 0,
    yMax: Math.max(quality.min_tsnr * 2, ...tsnrValues.map((v) => v * 1.2)),
    xMin,
    xMax,
    empty,
  });
  const global = points.filter((p) => p.global_pct !== null).map((p) => [p.tr, p.global_pct]);
  const outliers = points.filter((p) => p.outlier && p.global_pct !== null).map((p) => [p.tr, p.global_pct]);
  const limit = quality.max_global_pct;
  const span = Math.max(limit * 1.5, ...global.map((p) => Math.abs(p[1]) * 1.2));
  const globalCanvas = $("#global-plot");
  globalCanvas.dataset.points = global.length;
  linePlot(globalCanvas, {
    series: [
      { name: "global", color: GLOBAL_COLOR, points: global },
      { name: "outliers", color: TR_COLOR, points: outliers, line: false, dots: true },
    ],
    lines: [
      { y: limit, color: TR_COLOR, label: `+${limit}%` },
      { y: -limit, color: TR_COLOR, label: `-${limit}%` },
    ],
    yMin: -span,
    yMax: span,
    xMin,
    xMax,
    empty,
  });
}

// The Start/Stop recording button follows the recorder's own heartbeat (streaming or paused).
function showRecording(nodes) {
  const recorder = nodes.find((node) => node.name === "recorder");
  const button = $("#record");
  const box = $("#recording");
  const live = recorder && (recorder.level === "ok" || recorder.level === "waiting");
  const state = live ? recorder.state : "unknown";
  box.dataset.recording = state === "streaming" ? "on" : state === "paused" ? "off" : "unknown";
  if (state === "streaming" || state === "paused") {
    const on = state === "streaming";
    $("#record-state").textContent = on ? "recording" : "stopped: nothing is being recorded";
    button.textContent = on ? "Stop recording" : "Start recording";
    button.dataset.command = on ? "stop" : "start";
    button.disabled = false;
  } else {
    $("#record-state").textContent = recorder ? `recorder ${levelText(recorder)}` : "no recorder";
    button.disabled = true;
  }
}

async function sendRecord(command) {
  const error = $("#record-error");
  error.hidden = true;
  const button = $("#record");
  button.disabled = true;
  try {
    const response = await fetch("/api/record", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ command }),
    });
    const reply = await response.json();
    if (!reply.ok) throw new Error(reply.error || `HTTP ${response.status}`);
  } catch (failure) {
    error.textContent = `could not ${command} recording: ${failure.message}`;
    error.hidden = false;
    button.disabled = false;
  }
}

$("#record").addEventListener("click", () => {
  const command = $("#record").dataset.command;
  if (command === "stop" && !window.confirm("Stop recording? Nothing is recorded until you start it again.")) return;
  sendRecord(command);
});

function showState(state) {
  latest = state;
  showNodes(state.nodes);
  showSources(state);
  showRecording(state.nodes);
  showCounts(state);
  showWarnings(state.warnings);
  latencyPlot(state);
  latencyTable(state);
  motionPlot(state);
  confidencePlot(state);
  qualityTable(state);
  qualityPlots(state);
}

function truthCell(truth, big) {
  if (truth?.picture) {
    const img = element("img", { src: truth.picture, alt: truth.caption || `stimulus ${truth.stimulus_id}` });
    img.dataset.stimulus = truth.stimulus_id;
    return img;
  }
  const text = truth ? (truth.caption || `stimulus ${truth.stimulus_id}`) : "blank";
  return element("span", {}, big ? text : text.slice(0, 40));
}

function showTruth(frame) {
  const truth = frame.header.truth;
  const img = $("#truth");
  const none = $("#truth-none");
  const caption = $("#truth-caption");
  if (truth?.picture) {
    if (img.getAttribute("src") !== truth.picture) img.src = truth.picture;
    img.dataset.stimulus = truth.stimulus_id;
    img.hidden = false;
    none.hidden = true;
  } else {
    img.hidden = true;
    img.removeAttribute("data-stimulus");
    none.hidden = false;
    none.textContent = truth ? `stimulus ${truth.stimulus_id} (no picture: set console.dataset)` : frame.header.lag_trs === null ? "no lag_trs in the frames" : "no stimulus on screen";
  }
  caption.replaceChildren();
  if (truth) {
    caption.append(`shown: #${truth.stimulus_id} ${truth.caption} (onset TR ${truth.onset_tr})`);
    if (truth.scored) caption.append(" ", element("span", { class: "scored" }, "· scored TR"));
  } else {
    caption.append("shown: nothing");
  }
  // Trial mode: the trial the decoder estimates at this TR (its own pairing, by the same rule).
  const trial = frame.header.trial;
  if (trial) {
    const complete = trial.complete ? ", complete" : "";
    const text = `· decoder: trial ${trial.index}, #${trial.stimulus_id} (onset TR ${trial.onset_tr}${complete})`;
    caption.append(" ", element("span", { class: "trial" }, text));
  }
}

function addToStrip(frame) {
  const figure = element("figure", { "data-tr": frame.header.tr });
  const top = element("div", { class: "cell" });
  top.append(truthCell(frame.header.truth, false));
  const bottom = element("div", { class: "cell" });
  const canvas = element("canvas");
  drawFrame(canvas, frame);
  bottom.append(canvas);
  figure.append(top, bottom, element("figcaption", {}, `TR ${frame.header.tr}`));
  const strip = $("#strip");
  strip.prepend(figure);
  while (strip.children.length > STRIP_LENGTH) strip.lastChild.remove();
}

function showFrame(frame) {
  drawFrame($("#recon"), frame);
  const lag = frame.header.lag_trs;
  $("#recon-tr").textContent = `TR ${frame.header.tr}`;
  $("#pair-tr").textContent =
    lag === null || lag === undefined ? "" : `(reconstruction of TR ${frame.header.tr} shows TR ${frame.header.tr - lag}: lag ${lag} TRs)`;
  document.body.dataset.frameTr = frame.header.tr;
  showTruth(frame);
  addToStrip(frame);
}

await loadSchema();

connect("/ws/console", {
  onOpen: () => {
    document.body.dataset.socket = "open";
    $("#link").textContent = "connected";
  },
  onClose: () => {
    document.body.dataset.socket = "closed";
    $("#link").textContent = "console server unreachable";
  },
  onText: (message) => {
    const state = checked("state", message);
    if (state.type === "state") showState(state);
  },
  onFrame: (frame) => showFrame({ ...frame, header: checked("console_picture", frame.header) }),
});

window.addEventListener("resize", () => latest && showState(latest));
