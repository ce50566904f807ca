"""The process loops that do the I/O (decoder, renderer) and the supervisor that runs them."""
