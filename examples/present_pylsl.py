"""A minimal presenter that sends rt_recon's training-run markers with pylsl alone.

It plays a design (a BIDS events.tsv with columns onset, duration, trial_type and, for
pictures, stimulus_id and caption: the file ``rt-recon present`` writes, or your own) and
sends one JSON marker per trial on an LSL ``Markers`` stream, stamped with the LSL time
the trial went on screen (docs/protocol.md 2, "Presenting a training run"). Here "on
screen" is a line printed in the terminal: in PsychoPy put the ``stamp = ...`` line right
after ``win.flip()`` (or use ``win.timeOnFlip``), converted to the LSL clock.

    python examples/present_pylsl.py run-01_events.tsv --source-id rt_recon_markers_demo

Press Enter (or type the trigger key and Enter) to start; ``--no-wait`` starts at once.
A key press of an attention task would go out as
``{"type": "response", "run": RUN, "trial": K, "onset": S, "key": "1", "response_time": RT}``.
No rt_recon import: any program in any language can do the same.
"""

from __future__ import annotations

import argparse
import csv
import json
import time

import pylsl


def read_design(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def event_marker(run: str, k: int, row: dict, onset: float) -> dict:
    marker = {
        "type": "event",
        "run": run,
        "trial": k,
        "onset": round(onset, 4),
        "duration": float(row["duration"]),
        "trial_type": row.get("trial_type") or "stimulus",
    }
    if row.get("stimulus_id") not in (None, "", "n/a"):
        marker["stimulus_id"] = int(row["stimulus_id"])
        marker["caption"] = row.get("caption", "")
    return marker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("events", help="the design: a BIDS events.tsv")
    parser.add_argument("--name", default="rt_recon_markers", help="LSL stream name")
    parser.add_argument("--source-id", default="rt_recon_markers_demo", help="LSL source_id")
    parser.add_argument("--run", default="01", help="run id the markers carry")
    parser.add_argument("--no-wait", action="store_true", help="start without a trigger")
    args = parser.parse_args()

    rows = read_design(args.events)
    info = pylsl.StreamInfo(args.name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", args.source_id)
    outlet = pylsl.StreamOutlet(info)

    def send(marker: dict, stamp: float) -> None:
        outlet.push_sample([json.dumps(marker)], stamp)

    outlet.wait_for_consumers(5.0)  # a consumer that connects later misses what came before
    if not args.no_wait:
        input("waiting for the trigger (Enter) ... ")
    start = pylsl.local_clock()
    send({"type": "run_start", "run": args.run}, start)
    for k, row in enumerate(rows):
        # wait for the planned onset on the LSL clock (a display would wait for its flip)
        due = start + float(row["onset"])
        while (left := due - pylsl.local_clock()) > 0:
            time.sleep(min(left, 0.005))
        print(f"trial {k}: {row.get('trial_type')} {row.get('stimulus_id', '')}", flush=True)
        stamp = pylsl.local_clock()  # the time it went on screen
        send(event_marker(args.run, k, row, stamp - start), stamp)
    last = rows[-1] if rows else {"onset": 0, "duration": 0}
    end = start + float(last["onset"]) + float(last["duration"])
    while (left := end - pylsl.local_clock()) > 0:
        time.sleep(min(left, 0.005))
    send({"type": "run_end", "run": args.run}, pylsl.local_clock())
    time.sleep(0.5)  # let every inlet pull the last marker before the outlet goes


if __name__ == "__main__":
    main()
