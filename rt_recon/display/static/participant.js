// The participant display: the newest picture, full-screen; a fixation cross while there is none.
// Messages are read through checked() (schema.js, schema.json).
import { connect, drawFrame, now } from "/static/common.js";
import { checked, loadSchema } from "/static/schema.js";

const canvas = document.getElementById("picture");
const body = document.body;
const notice = document.getElementById("notice");

// What was shown last, with timestamps (epoch ms) for latency measurements,
// and the sequence numbers of the last pictures drawn.
const HISTORY = 200;
window.rtParticipant = { drawn: 0, shown: null, seqs: [] };

// While the page reconnects, one dim line at the foot of the screen says to what, for the
// operator watching the participant's screen.
const NOTICES = {
  reconnecting: "reconnecting to the renderer…",
  console: "reconnecting to the console…",
};

// No picture: the fixation cross. `reason`: the renderer's level from the console
// (reconnecting, away, stopped), or "console" when this page's own socket closed.
function waiting(reason = null) {
  body.dataset.state = "waiting";
  body.dataset.reason = reason ?? "";
  notice.textContent = NOTICES[reason] ?? "";
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
    drawFrame(canvas, frame);
    const shown = {
      seq: frame.header.seq,
      tr: frame.header.tr,
      receivedAt: frame.receivedAt,
      drawnAt: now(),
      nextFrameAt: null, // the next animation frame: when the browser composes the picture
    };
    body.dataset.state = "showing";
    body.dataset.reason = "";
    notice.textContent = "";
    body.dataset.seq = String(shown.seq);
    window.rtParticipant.shown = shown;
    window.rtParticipant.drawn += 1;
    window.rtParticipant.seqs.push(shown.seq);
    if (window.rtParticipant.seqs.length > HISTORY) window.rtParticipant.seqs.shift();
    requestAnimationFrame(() => {
      shown.nextFrameAt = now();
    });
  },
});

// Full screen on double click (or start the browser in kiosk mode, docs/console.md).
document.addEventListener("dblclick", () => document.documentElement.requestFullscreen?.());
