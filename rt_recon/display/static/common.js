// Shared by both pages: the page socket, the binary picture message, drawing.
//
// A picture message is [uint32 LE n][n bytes of JSON header][RGB bytes]
// (rt_recon/display/frames.py). The page answers "ack" once it has drawn a
// picture; the server sends the next (always the newest) only then.

/** Wall-clock time in milliseconds since the epoch, sub-millisecond resolution. */
export function now() {
  return performance.timeOrigin + performance.now();
}

export function decodeFrame(buffer) {
  const view = new DataView(buffer);
  const n = view.getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  return { header, rgb: new Uint8Array(buffer, 4 + n) };
}

const images = new WeakMap();

/** Draw a decoded picture into a canvas sized to the picture (CSS scales it). */
export function drawFrame(canvas, frame) {
  const { width, height } = frame.header;
  const ctx = canvas.getContext("2d");
  let image = images.get(canvas);
  if (canvas.width !== width || canvas.height !== height || !image) {
    canvas.width = width;
    canvas.height = height;
    image = ctx.createImageData(width, height);
    images.set(canvas, image);
  }
  const out = image.data;
  const rgb = frame.rgb;
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    out[i] = rgb[j];
    out[i + 1] = rgb[j + 1];
    out[i + 2] = rgb[j + 2];
    out[i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

/**
 * Open the page socket at `path` and keep it open (reconnecting every second).
 * Handlers: onOpen(), onClose(), onText(object), onFrame(frame) — onFrame draws
 * synchronously; the ack goes out when it returns.
 */
export function connect(path, handlers) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const open = () => {
    const socket = new WebSocket(`${scheme}//${location.host}${path}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => handlers.onOpen?.();
    socket.onclose = () => {
      handlers.onClose?.();
      setTimeout(open, 1000);
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        handlers.onText?.(JSON.parse(event.data));
        return;
      }
      const frame = decodeFrame(event.data);
      frame.receivedAt = now();
      try {
        handlers.onFrame?.(frame);
      } finally {
        socket.send("ack");
      }
    };
  };
  open();
}
