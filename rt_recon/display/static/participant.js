// The participant display: the newest picture, full-screen; a fixation cross while there is none.
import { connect, drawFrame, now } from "/static/common.js";

const canvas = document.getElementById("picture");
const body = document.body;

// What was shown last, with timestamps (epoch ms) for latency measurements,
// and the sequence numbers of the last pictures drawn.
const HISTORY = 200;
window.rtParticipant = { drawn: 0, shown: null, seqs: [] };

function waiting() {
  body.dataset.state = "waiting";
}

connect("/ws/participant", {
  onOpen: () => {
    body.dataset.socket = "open";
  },
  onClose: () => {
    body.dataset.socket = "closed";
    waiting(); // never leave a stale picture up when the console is gone
  },
  onText: (message) => {
    if (message.type === "waiting") waiting();
  },
  onFrame: (frame) => {
    drawFrame(canvas, frame);
    const shown = {
      seq: frame.header.seq,
      tr: frame.header.tr,
      receivedAt: frame.receivedAt,
      drawnAt: now(),
      nextFrameAt: null, // the next animation frame: when the browser composes the picture
    };
    body.dataset.state = "showing";
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
