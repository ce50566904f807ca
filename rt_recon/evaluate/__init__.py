"""Scoring sessions: latency per stage, reconstruction quality."""
