"""The pure state machine: commands in, events and effects out; no I/O, time only via the context."""
