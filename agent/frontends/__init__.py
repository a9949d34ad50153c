"""Front ends: each consumes the core's events and never reaches into the loop."""
