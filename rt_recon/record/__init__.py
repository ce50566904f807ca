"""Session recording: everything that crossed a wire, timestamped, crash-safe, replayable."""
