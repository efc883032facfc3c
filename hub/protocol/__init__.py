"""The wire protocol: every Struct that crosses a socket or reaches the disk, and its codec."""
