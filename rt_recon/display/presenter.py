"""Plays a training run's design on the participant page and sends each onset as a marker.

The page (``static/present.js``, loaded by the participant display) does the drawing; this
side gives it the design, keeps time with it and publishes what it reports. Over the
page's WebSocket ``/ws/present`` (every message a JSON object with ``type``):

server -> page
    ``design``  the run: trials (onsets in seconds from the start), picture URLs (only of
                the rows that show their picture: never on an imagery run's cue or imagery
                row), how it starts (``start_on``: ``key`` or ``volume``), the trigger and
                response keys
    ``pong``    ``{id, t}``: the answer to a ``ping``, ``t`` this machine's LSL clock
    ``start``   ``{t}``: the scanner's first volume was acquired at ``t`` (LSL clock)

page -> server
    ``ping``     ``{id}``: a clock round trip (NTP-style; the page keeps the shortest)
    ``clock``    ``{offset_s, rtt_ms, spread_ms, n}``: the page's clock offset (LSL time =
                 ``performance.now() / 1000 + offset_s``), its round trip and the spread
                 of the offsets of the samples it kept
    ``ready``    pictures decoded, clock measured: wait for the start
    ``start``    ``{t}``: the trigger key was pressed at ``t`` (LSL clock)
    ``onset``    ``{trial, t, late_ms}``: trial ``trial`` was first drawn in the animation
                 frame of time ``t`` (LSL clock), ``late_ms`` after its planned onset (a cue:
                 its words; an imagery row: the fixation cross that starts the imagining)
    ``response`` ``{key, t}``: a response key was pressed at ``t``
    ``end``      ``{t}``: the lead-out is over

The markers (docs/protocol.md 2) go out stamped with those times: ``run_start`` at the
start, one ``event`` per row of the design (``trial_type`` ``stimulus``, ``blank``,
``catch``, ``cue`` or ``imagery``; the measured onset in seconds from the start), a
``response`` per key press (its trial is the last one drawn before it; ``response_time``
from that trial's onset), ``run_end`` at the end.

``/present/{stimulus_id}`` serves only the pictures the design shows: an imagery run's
pictures are not served at all (404), so no page can draw one by mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pylsl
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from rt_recon.display.design import PICTURE_TYPES, Design, Stimulus
from rt_recon.display.messages import (
    PresentDesign,
    PresentOff,
    PresentPong,
    PresentStart,
    PresentTrial,
)
from rt_recon.display.trigger import ScannerStart, wait_for_first_volume
from rt_recon.errors import ProtocolError
from rt_recon.protocol import RESPONSE, RUN_END, RUN_START, Marker

log = logging.getLogger(__name__)

StartOn = Literal["key", "volume"]


class MarkerSink(Protocol):
    """Where markers go (:class:`rt_recon.transport.lsl.MarkerOutlet`)."""

    def push(self, event: Marker | Mapping[str, Any], timestamp: float) -> None: ...


@dataclass
class RunLog:
    """What happened in the run, on the LSL clock (for the operator and the tests)."""

    start: float | None = None
    started_by: str | None = None
    onsets: dict[int, float] = field(default_factory=dict)
    late_ms: dict[int, float] = field(default_factory=dict)
    responses: list[Marker] = field(default_factory=list)
    clock: dict[str, float] = field(default_factory=dict)
    end: float | None = None


def _number(message: Mapping[str, Any], key: str) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(
            f"present message {message.get('type')!r}: expected a finite number in {key!r}, "
            f"found {value!r}"
        )
    return float(value)


class Presenter:
    """One run of a design, shown by one participant page at a time.

    Args:
        design: the trials (:func:`rt_recon.display.design.build_design`).
        stimuli: the stimulus set the design draws from.
        markers: where markers go (the session's marker outlet).
        run: the run id the markers carry.
        start_on: ``key`` (the trigger key a button box sends) or ``volume`` (the first
            volume of ``volume_source_id``).
        trigger_key, response_keys: ``KeyboardEvent.key`` values.
        on_end: called once the run ended (``run_end`` sent).
    """

    def __init__(
        self,
        design: Design,
        stimuli: Mapping[int, Stimulus],
        markers: MarkerSink,
        *,
        run: str = "01",
        start_on: StartOn = "key",
        trigger_key: str = "5",
        response_keys: tuple[str, ...] = ("1", "2"),
        volume_source_id: str | None = None,
        resolve_timeout_s: float = 5.0,
        clock: Callable[[], float] = pylsl.local_clock,
        on_end: Callable[[], None] | None = None,
    ):
        if start_on == "volume" and volume_source_id is None:
            raise ValueError("start_on='volume' needs volume_source_id")
        if trigger_key in response_keys:
            raise ValueError(
                f"the trigger key {trigger_key!r} cannot also be a response key {response_keys}"
            )
        self.design = design
        self.stimuli = stimuli
        self.markers = markers
        self.run = run
        self.start_on: StartOn = start_on
        self.trigger_key = trigger_key
        self.response_keys = tuple(response_keys)
        self.volume_source_id = volume_source_id
        self.resolve_timeout_s = resolve_timeout_s
        self.clock = clock
        self.on_end = on_end
        self.log = RunLog()
        self._trials = {t.trial: t for t in design.trials}
        self._shown = {t.stimulus_id for t in design.trials if t.shows_picture}
        self._busy = False
        self._stop = threading.Event()

    # ------------------------------------------------------------- what the page gets

    def design_message(self) -> dict[str, Any]:
        """The ``design`` message: everything the page needs to play the run."""
        return PresentDesign(
            type="design",
            run=self.run,
            start_on=self.start_on,
            trigger_key=self.trigger_key,
            response_keys=list(self.response_keys),
            lead_out_s=self.design.spec.lead_out_s,
            total_s=self.design.total_s,
            trials=[
                PresentTrial(
                    **t.to_json(),
                    picture=f"/present/{t.stimulus_id}" if t.shows_picture else None,
                )
                for t in self.design.trials
            ],
        ).to_json()

    def picture(self, stimulus_id: int) -> Response:
        """A picture this run shows; 404 for any other (an imagery run shows none)."""
        stimulus = self.stimuli.get(stimulus_id)
        if stimulus is None or stimulus_id not in self._shown:
            return PlainTextResponse(
                f"no stimulus {stimulus_id} shown in this run\n", status_code=404
            )
        return Response(
            stimulus.path.read_bytes(),
            media_type=PICTURE_TYPES[stimulus.path.suffix.lower()],
            headers={"Cache-Control": "no-cache"},
        )

    # -------------------------------------------------------- what the page reports

    def handle(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        """Act on one message from the page; the reply to send, if any.

        Raises:
            ProtocolError: a message of an unknown type or with a bad field.
        """
        kind = message.get("type")
        if kind == "ping":
            ping_id = _number(message, "id")
            return PresentPong(type="pong", id=int(ping_id), t=self.clock()).to_json()
        if kind == "clock":
            self.log.clock = {
                k: _number(message, k) for k in ("offset_s", "rtt_ms", "spread_ms", "n")
            }
            log.info(
                "page clock: offset %.6f s, round trip %.2f ms, spread %.2f ms (n=%d)",
                self.log.clock["offset_s"],
                self.log.clock["rtt_ms"],
                self.log.clock["spread_ms"],
                int(self.log.clock["n"]),
            )
        elif kind == "ready":
            log.info(
                "participant page ready: waiting for %s",
                f"the trigger key {self.trigger_key!r}"
                if self.start_on == "key"
                else f"the first volume of {self.volume_source_id!r}",
            )
        elif kind == "start":
            if self.start_on == "key":
                self._started(_number(message, "t"), "key")
        elif kind == "onset":
            self._onset(int(_number(message, "trial")), _number(message, "t"), message)
        elif kind == "response":
            key = message.get("key")
            if not isinstance(key, str):
                raise ProtocolError(f"present message 'response': expected a key, found {key!r}")
            self._response(key, _number(message, "t"))
        elif kind == "end":
            self._end(_number(message, "t"))
        else:
            raise ProtocolError(f"unknown present message type {kind!r}")
        return None

    def _started(self, t: float, by: str, tr_s: float | None = None) -> None:
        if self.log.start is not None:
            return
        self.log.start, self.log.started_by = t, by
        marker = Marker(type=RUN_START, run=self.run, tr_s=tr_s)
        self.markers.push(marker, t)
        log.info("run %s started by the %s at %.4f (LSL)", self.run, by, t)

    def _onset(self, trial: int, t: float, message: Mapping[str, Any]) -> None:
        planned = self._trials.get(trial)
        if planned is None or self.log.start is None:
            raise ProtocolError(f"onset of trial {trial}: no such trial, or the run has not begun")
        if trial in self.log.onsets:
            return
        self.log.onsets[trial] = t
        if isinstance(message.get("late_ms"), int | float):
            self.log.late_ms[trial] = float(message["late_ms"])
        marker = Marker(
            run=self.run,
            trial=trial,
            onset=round(t - self.log.start, 4),
            duration=planned.duration,
            trial_type=planned.trial_type,
            stimulus_id=planned.stimulus_id,
            caption=planned.caption,
        )
        self.markers.push(marker, t)

    def _response(self, key: str, t: float) -> None:
        if self.log.start is None or key not in self.response_keys:
            return
        shown = [(onset, trial) for trial, onset in self.log.onsets.items() if onset <= t]
        onset, trial = max(shown) if shown else (None, None)
        marker = Marker(
            type=RESPONSE,
            run=self.run,
            trial=trial,
            onset=round(t - self.log.start, 4),
            key=key,
            response_time=None if onset is None else round(t - onset, 4),
        )
        self.log.responses.append(marker)
        self.markers.push(marker, t)

    def _end(self, t: float) -> None:
        if self.log.start is None or self.log.end is not None:
            return
        self.log.end = t
        self.markers.push(Marker(type=RUN_END, run=self.run), t)
        missing = sorted(set(self._trials) - set(self.log.onsets))
        if missing:
            log.warning("run %s ended without onsets of trials %s", self.run, missing)
        log.info("run %s ended: %d onsets sent", self.run, len(self.log.onsets))
        if self.on_end is not None:
            self.on_end()

    # ------------------------------------------------------------------- the socket

    def routes(self) -> list[BaseRoute]:
        """``/present/{stimulus_id}`` (the pictures) and ``/ws/present``."""

        async def picture(request: Request) -> Response:
            return self.picture(request.path_params["stimulus_id"])

        return [
            Route("/present/{stimulus_id:int}", picture),
            WebSocketRoute("/ws/present", self.serve),
        ]

    async def serve(self, websocket: WebSocket) -> None:
        """Play the run with one page; a second page meanwhile is refused."""
        await websocket.accept()
        if self._busy:
            await websocket.send_text(json.dumps(PresentOff(type="busy").to_json()))
            await websocket.close()
            return
        self._busy = True
        waiter: asyncio.Task[None] | None = None
        try:
            await websocket.send_text(json.dumps(self.design_message()))
            while True:
                try:
                    message = json.loads(await websocket.receive_text())
                    reply = self.handle(message)
                except (ProtocolError, json.JSONDecodeError, AttributeError) as exc:
                    log.warning("present: dropped a message from the page: %s", exc)
                    continue
                if reply is not None:
                    await websocket.send_text(json.dumps(reply))
                if message.get("type") == "ready" and self.start_on == "volume" and not waiter:
                    waiter = asyncio.create_task(self._await_scanner(websocket))
        except WebSocketDisconnect:
            log.info("participant page left the presentation")
        finally:
            self._busy = False
            if waiter is not None:
                self._stop.set()
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
                self._stop.clear()

    async def _await_scanner(self, websocket: WebSocket) -> None:
        assert self.volume_source_id is not None
        try:
            start: ScannerStart | None = await asyncio.to_thread(
                wait_for_first_volume, self.volume_source_id, self._stop, self.resolve_timeout_s
            )
        except Exception as exc:  # told to the operator; the page keeps waiting
            log.error("presenter: no scanner start: %s", exc)
            return
        if start is None:
            return
        self._started(start.t, "volume", tr_s=start.tr_s)
        await websocket.send_text(json.dumps(PresentStart(type="start", t=start.t).to_json()))


async def no_presentation(websocket: WebSocket) -> None:
    """``/ws/present`` of a console without a run to present: says so and closes."""
    await websocket.accept()
    await websocket.send_text(json.dumps(PresentOff(type="off").to_json()))
    await websocket.close()
