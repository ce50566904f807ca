"""The two wires: LSL for volumes and markers, ZeroMQ for latents, frames and status."""
