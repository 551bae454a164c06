"""A log file that cannot grow without bound: the first and last `keep` bytes are kept, the rest counted.

The head is written as it arrives, so a log read mid-run shows the start; the tail is held in memory and
written by close(), after a line saying how many bytes were left out between them.
Left out on purpose: rotation, compression, and decoding (bytes in, bytes out).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO

KEEP_BYTES = 1 << 20  # 1 MiB of head and 1 MiB of tail per log


class CappedLog:
    def __init__(self, path: Path, keep: int = KEEP_BYTES):
        self.path, self.keep = path, keep
        self.head_left, self.tail, self.omitted = keep, bytearray(), 0
        self.lock = threading.Lock()
        path.write_bytes(b"")

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.head_left > 0:
                head, data = data[:self.head_left], data[self.head_left:]
                with self.path.open("ab") as handle:
                    handle.write(head)
                self.head_left -= len(head)
            if data:
                self.tail += data
                excess = len(self.tail) - self.keep
                if excess > 0:
                    self.omitted += excess
                    del self.tail[:excess]

    def pump(self, stream: BinaryIO) -> threading.Thread:
        """Copy a process's output stream into the log on a background thread, until it ends."""

        def run() -> None:
            try:
                while chunk := stream.read1(1 << 16):
                    self.write(chunk)
            except (OSError, ValueError):
                pass

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def last_text(self, limit: int = 4000) -> str:
        """The last `limit` bytes written so far, as text (for error lines)."""
        with self.lock:
            data = bytes(self.tail) if self.tail else self.path.read_bytes()[-limit:]
        return data[-limit:].decode("utf-8", "replace")

    def close(self) -> None:
        """Write the held tail after a line counting what was left out; the log is then complete."""
        with self.lock:
            with self.path.open("ab") as handle:
                if self.omitted:
                    handle.write(f"\n--- {self.omitted:,} bytes left out here: the log keeps the first and last "
                                 f"{self.keep:,} bytes ---\n".encode())
                handle.write(bytes(self.tail))
            self.tail.clear()
            self.head_left = 0  # anything written after close() is counted, not kept
