// Stimulus presentation on the participant display (`rt-recon present`; the server side is
// rt_recon/display/presenter.py, which lists the messages on /ws/present).
//
// The page gets the run's design, decodes every picture, measures its clock against the
// server's LSL clock (NTP-style round trips over this socket, keeping the shortest), then
// waits for the start: the trigger key, or the server's word that the scanner's first
// volume was acquired. It draws on requestAnimationFrame: a trial is drawn in the first
// frame whose time is within half a frame of its planned onset, and that frame's time,
// mapped to the LSL clock, is the onset it reports (the server sends the marker stamped
// with it). Response keys are reported with their event time, mapped alike.
//
// A row draws, by its trial_type: stimulus or catch, its picture; blank, the grey fixation
// cross; cue (an imagery run), its words (the row's caption); imagery, the fixation cross in
// white (imagine now). After a row's duration the grey cross comes back (the rest). Rows
// without a picture URL (blank, cue, imagery) load and draw no picture.
//
// On a console without a presentation the server answers {"type": "off"} and this script
// does nothing more. Messages are read through checked() (schema.js, schema.json).
import { checked, loadSchema } from "/static/schema.js";

const SYNC_PINGS = 20; // round trips before the run
const SYNC_GAP_MS = 20;
const RESYNC_MS = 1000; // one more round trip a second while the page is up
const KEEP = 20; // the offset is that of the shortest of the last KEEP round trips

const rt = {
  phase: "idle", // idle, loading, ready, running, done, off
  design: null,
  clock: null, // {offset_s, rtt_ms, spread_ms, n}: LSL s = performance.now() / 1000 + offset_s
  samples: [], // every round trip: {rtt_ms, offset_s}
  startMs: null, // the run's start, performance.now() time base
  onsets: {}, // trial -> frame time (ms, performance.now() time base) it was first drawn in
  late: {}, // trial -> ms after its planned onset
  responses: [], // {key, ms}
  frameMs: 1000 / 60,
};
window.rtPresent = rt;

let socket = null;
let resync = null;
const pictures = new Map(); // url -> decoded HTMLImageElement
const pending = new Map(); // ping id -> {sent, resolve}
let pingId = 0;

const layer = document.createElement("div");
layer.id = "present";
const canvas = document.createElement("canvas");
canvas.id = "present-picture";
canvas.setAttribute("aria-label", "stimulus picture");
const fixation = document.createElement("div");
fixation.id = "present-fixation";
fixation.setAttribute("aria-hidden", "true");
const cue = document.createElement("div");
cue.id = "present-cue";
layer.append(canvas, fixation, cue);
document.body.append(layer);

function setPhase(phase) {
  rt.phase = phase;
  document.body.dataset.present = phase;
}

function send(message) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

const toLsl = (ms) => ms / 1000 + rt.clock.offset_s;
const fromLsl = (t) => (t - rt.clock.offset_s) * 1000;

// ------------------------------------------------------------------------- the clock

function ping() {
  const id = pingId++;
  return new Promise((resolve) => {
    pending.set(id, { sent: performance.now(), resolve });
    send({ type: "ping", id });
  });
}

function onPong(message) {
  const received = performance.now();
  const entry = pending.get(message.id);
  if (entry === undefined) return;
  pending.delete(message.id);
  const rtt = received - entry.sent;
  rt.samples.push({ rtt_ms: rtt, offset_s: message.t - (entry.sent + received) / 2000 });
  const recent = rt.samples.slice(-KEEP);
  const best = recent.reduce((a, b) => (b.rtt_ms < a.rtt_ms ? b : a));
  const offsets = recent.map((s) => s.offset_s);
  rt.clock = {
    offset_s: best.offset_s,
    rtt_ms: best.rtt_ms,
    spread_ms: (Math.max(...offsets) - Math.min(...offsets)) * 1000,
    n: recent.length,
  };
  entry.resolve();
}

async function measureClock() {
  for (let i = 0; i < SYNC_PINGS; i += 1) {
    await ping();
    await new Promise((resolve) => setTimeout(resolve, SYNC_GAP_MS));
  }
  send({ type: "clock", ...rt.clock });
}

// --------------------------------------------------------------------------- drawing

// What the layer shows: "fixation" (the rest), "picture", "cue" or "imagery".
function showing(what) {
  layer.dataset.showing = what;
  if (what !== "cue") cue.textContent = "";
}

// Draw one row of the design (null: the rest, the grey fixation cross).
function draw(trial) {
  if (trial === null || trial.trial_type === "blank") {
    showing("fixation");
  } else if (trial.trial_type === "cue") {
    cue.textContent = trial.caption ?? "";
    showing("cue");
  } else if (trial.trial_type === "imagery") {
    showing("imagery");
  } else if (trial.picture !== null) {
    show(pictures.get(trial.picture));
  } else {
    showing("fixation");
  }
}

function show(image) {
  if (canvas.width !== image.naturalWidth || canvas.height !== image.naturalHeight) {
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
  }
  canvas.getContext("2d").drawImage(image, 0, 0);
  showing("picture");
}

// The display's frame interval, from requestAnimationFrame's times (kept up during the run).
let lastFrameMs = null;
function frameInterval(frameMs) {
  if (lastFrameMs !== null) {
    const delta = frameMs - lastFrameMs;
    if (delta > 0 && delta < 100) rt.frameMs = 0.9 * rt.frameMs + 0.1 * delta;
  }
  lastFrameMs = frameMs;
}

// Until the run begins: measure the frame interval (a 120 Hz display is not assumed 60 Hz).
function idleFrames(frameMs) {
  if (rt.phase !== "loading" && rt.phase !== "ready") return;
  frameInterval(frameMs);
  requestAnimationFrame(idleFrames);
}

async function load(design) {
  setPhase("loading");
  draw(null);
  requestAnimationFrame(idleFrames);
  const urls = [...new Set(design.trials.map((t) => t.picture).filter((u) => u !== null))];
  await Promise.all(
    urls.map(async (url) => {
      const image = new Image();
      image.src = url;
      await image.decode();
      pictures.set(url, image);
    }),
  );
  await measureClock();
  resync = setInterval(ping, RESYNC_MS);
  setPhase("ready");
  send({ type: "ready" });
}

// ---------------------------------------------------------------------------- the run

function begin(startMs) {
  if (rt.phase !== "ready") return;
  rt.startMs = startMs;
  const actions = [];
  for (const trial of rt.design.trials) {
    const at = startMs + trial.onset * 1000;
    actions.push({ at, kind: "show", trial });
    actions.push({ at: at + trial.duration * 1000, kind: "hide", trial });
  }
  actions.push({ at: startMs + rt.design.total_s * 1000, kind: "end" });
  actions.sort((a, b) => a.at - b.at || (a.kind === "hide" ? -1 : 1));
  setPhase("running");
  let next = 0;
  let current = null; // the row drawn now (null: the rest)

  const tick = (frameMs) => {
    frameInterval(frameMs);
    // everything due before the middle of the next frame is drawn in this one
    while (next < actions.length && actions[next].at <= frameMs + rt.frameMs / 2) {
      const action = actions[next];
      next += 1;
      if (action.kind === "show") {
        const { trial } = action;
        draw(trial);
        current = trial;
        rt.onsets[trial.trial] = frameMs;
        rt.late[trial.trial] = frameMs - action.at;
        send({ type: "onset", trial: trial.trial, t: toLsl(frameMs), late_ms: frameMs - action.at });
      } else if (action.kind === "hide") {
        // only the row drawn now ends: a cue's end and its imagery's start fall together
        if (current === action.trial) {
          draw(null);
          current = null;
        }
      } else {
        send({ type: "end", t: toLsl(frameMs) });
        setPhase("done");
        return;
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}

document.addEventListener("keydown", (event) => {
  if (event.repeat || rt.design === null) return;
  if (rt.phase === "ready" && rt.design.start_on === "key" && event.key === rt.design.trigger_key) {
    send({ type: "start", t: toLsl(event.timeStamp) });
    begin(event.timeStamp);
  } else if (rt.phase === "running" && rt.design.response_keys.includes(event.key)) {
    rt.responses.push({ key: event.key, ms: event.timeStamp });
    send({ type: "response", key: event.key, t: toLsl(event.timeStamp) });
  }
});

// ------------------------------------------------------------------------- the socket

// The schema's name of each message type on /ws/present.
const KINDS = {
  design: "present_design",
  pong: "present_pong",
  start: "present_start",
  off: "present_off",
  busy: "present_off",
};

function onMessage(raw) {
  const message = checked(KINDS[raw.type] ?? `present_${raw.type}`, raw);
  if (message.type === "off" || message.type === "busy") {
    setPhase("off");
  } else if (message.type === "design") {
    if (rt.design !== null) return; // a reconnect: the run goes on as loaded
    rt.design = message;
    load(message).catch((error) => console.error(`presentation: ${error}`));
  } else if (message.type === "pong") {
    onPong(message);
  } else if (message.type === "start") {
    begin(fromLsl(message.t));
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(`${scheme}//${location.host}/ws/present`);
  socket.onmessage = (event) => onMessage(JSON.parse(event.data));
  socket.onclose = () => {
    if (rt.phase !== "off" && rt.phase !== "done") setTimeout(connect, 1000);
    else clearInterval(resync);
  };
}

await loadSchema();
connect();
