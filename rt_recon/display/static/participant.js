// The participant display: the newest picture, full-screen; a fixation cross while there is none.
// Messages are read through checked() (schema.js, schema.json).
//
// Each picture comes in with a crossfade from what is on the screen (the picture's
// crossfade_ms, console.crossfade_ms; 0: drawn at once, as it arrives): every animation frame
// until it is done draws the blend, (1 - a) * before + a * new, a going from 0 to 1 over the
// crossfade, which never lasts longer than the pictures' recent pace (the median of the last
// few times between them: a renderer sending interpolated frames at 30 per second is
// followed, not lagged, and one picture soon after another does not cut its crossfade
// short). A picture that arrives mid-crossfade fades in from the blend on the screen; the
// first picture after the fixation cross fades in from black.
//
// Confidence (console.confidence_fade_below; off by default): a picture whose confidence is
// below the picture's fade_below is shown faded toward the fixation screen, the picture at
// opacity confidence / fade_below over black and the fixation cross at the rest.
import { connect, drawFrame, now } from "/static/common.js";
import { checked, loadSchema } from "/static/schema.js";

const canvas = document.getElementById("picture");
const body = document.body;
const notice = document.getElementById("notice");
const fixation = document.getElementById("fixation");

// What was shown last, with timestamps (epoch ms) for latency measurements,
// and the sequence numbers of the last pictures drawn.
const HISTORY = 200;
window.rtParticipant = { drawn: 0, shown: null, seqs: [], opacity: 1 };

// While the page reconnects, one dim line at the foot of the screen says to what, for the
// operator watching the participant's screen.
const NOTICES = {
  reconnecting: "reconnecting to the renderer…",
  console: "reconnecting to the console…",
};

// The two ends of a crossfade, off screen: what was on the screen when the picture came, and
// the picture.
const before = document.createElement("canvas");
const after = document.createElement("canvas");
let fade = null; // {start (performance.now() ms), duration (ms), shown}; null: none running
let pending = false; // an animation frame is requested for step()
let fresh = true; // nothing on the canvas yet (or only a picture from before a wait)
let lastArrival = null; // performance.now() of the last picture's arrival
const PACE = 5; // the pace is the median of this many last times between pictures
let gaps = []; // the last times between pictures, ms

// No picture: the fixation cross. `reason`: the renderer's level from the console
// (reconnecting, away, stopped), or "console" when this page's own socket closed.
function waiting(reason = null) {
  body.dataset.state = "waiting";
  body.dataset.reason = reason ?? "";
  notice.textContent = NOTICES[reason] ?? "";
  fade = null;
  fresh = true;
  lastArrival = null;
  gaps = [];
  dim(1);
}

// The picture at `opacity` over black, the fixation cross at the rest (1: the picture alone).
function dim(opacity) {
  canvas.style.opacity = String(opacity);
  fixation.style.opacity = String(1 - opacity);
  body.dataset.faded = opacity < 1 ? "true" : "false";
  window.rtParticipant.opacity = opacity;
}

// How much of a picture shows: confidence / fade_below below fade_below, else all of it.
function opacityOf(header) {
  const { confidence, fade_below: below } = header;
  if (below === null || below === undefined || confidence === null || confidence === undefined) {
    return 1;
  }
  return confidence < below ? Math.max(0, confidence / below) : 1;
}

// The pictures' recent pace, ms: the median of the last times between them (Infinity: none).
function pace() {
  if (gaps.length === 0) return Infinity;
  const sorted = [...gaps].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// One animation frame of the running crossfade; the last draws the picture exactly.
function step(timestamp) {
  pending = false;
  if (fade === null) return;
  const ctx = canvas.getContext("2d");
  const a = Math.min(1, Math.max(0, (timestamp - fade.start) / fade.duration));
  ctx.globalCompositeOperation = "copy";
  ctx.globalAlpha = 1;
  ctx.drawImage(a < 1 ? before : after, 0, 0);
  if (a < 1) {
    ctx.globalCompositeOperation = "source-over";
    ctx.globalAlpha = a;
    ctx.drawImage(after, 0, 0);
    ctx.globalAlpha = 1;
  }
  const shown = fade.shown;
  if (shown.drawnAt === null) {
    shown.drawnAt = now();
    requestAnimationFrame(() => {
      shown.nextFrameAt = now();
    });
  }
  if (a >= 1) {
    ctx.globalCompositeOperation = "source-over";
    shown.settledAt = now();
    fade = null;
    return;
  }
  animate();
}

function animate() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(step);
}

// Bring `frame` in: at once, or as a crossfade over `ms` from what the canvas shows now.
function show(frame, ms, shown) {
  const { width, height } = frame.header;
  const arrival = performance.now();
  if (lastArrival !== null) gaps = [...gaps, arrival - lastArrival].slice(-PACE);
  lastArrival = arrival;
  const duration = Math.min(ms, pace());
  const sameSize = canvas.width === width && canvas.height === height;
  if (!(duration > 0) || (!fresh && !sameSize)) {
    fade = null;
    drawFrame(canvas, frame);
    shown.drawnAt = now();
    shown.settledAt = shown.drawnAt;
    requestAnimationFrame(() => {
      shown.nextFrameAt = now();
    });
    fresh = false;
    return;
  }
  for (const end of [before, after]) {
    if (end.width !== width || end.height !== height) {
      end.width = width;
      end.height = height;
    }
  }
  const start = before.getContext("2d");
  if (fresh) {
    start.fillStyle = "#000";
    start.fillRect(0, 0, width, height); // the first picture fades in from black
    canvas.width = width;
    canvas.height = height;
  } else {
    start.globalCompositeOperation = "copy";
    start.drawImage(canvas, 0, 0); // the screen as it is, mid-crossfade or not
  }
  drawFrame(after, frame);
  fade = { start: arrival, duration, shown };
  fresh = false;
  animate();
}

await loadSchema();

connect("/ws/participant", {
  onOpen: () => {
    body.dataset.socket = "open";
  },
  onClose: () => {
    body.dataset.socket = "closed";
    waiting("console"); // never leave a stale picture up when the console is gone
  },
  onText: (raw) => {
    const message = checked("waiting", raw);
    if (message.type === "waiting") waiting(message.reason);
  },
  onFrame: (raw) => {
    const frame = { ...raw, header: checked("participant_picture", raw.header) };
    const shown = {
      seq: frame.header.seq,
      tr: frame.header.tr,
      receivedAt: frame.receivedAt,
      drawnAt: null, // the picture first on the canvas (blended in, with a crossfade)
      nextFrameAt: null, // the next animation frame: when the browser composes it
      settledAt: null, // the picture wholly on the canvas (its crossfade done)
    };
    show(frame, frame.header.crossfade_ms, shown);
    dim(opacityOf(frame.header));
    body.dataset.state = "showing";
    body.dataset.reason = "";
    notice.textContent = "";
    body.dataset.seq = String(shown.seq);
    window.rtParticipant.shown = shown;
    window.rtParticipant.drawn += 1;
    window.rtParticipant.seqs.push(shown.seq);
    if (window.rtParticipant.seqs.length > HISTORY) window.rtParticipant.seqs.shift();
  },
});

// Full screen on double click (or start the browser in kiosk mode, docs/console.md).
document.addEventListener("dblclick", () => document.documentElement.requestFullscreen?.());
