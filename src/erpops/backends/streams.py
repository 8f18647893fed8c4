"""Streaming plumbing for backups and restores: child processes with piped output, zstd, and
files held open from their checksum check to their use (:class:`CheckedFile`).

Nothing here holds a whole artifact in memory: data moves in chunks of :data:`CHUNK` bytes from a
child process (``pg_dump``, ``tar``) through a zstd compressor into an object writer, or back from
an object reader through a SHA-256 and a zstd decompressor into a file or a child's stdin.

```python
with Child([pg_dump, "-Fc", "-Z0", "mydb"], env=env, stdout=True, name="pg_dump") as dump:
    read = compress(dump.stdout, writer, level=3, threads=2, cancelled=ctx_cancelled)
    dump.finish(cancelled=ctx_cancelled)      # raises with pg_dump's last stderr line on failure
```
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

import zstandard

from erpops.errors import PermanentError
from erpops.process import child_env, die_with_parent, kill_group

CHUNK = 1024 * 1024
#: Linux ``F_SETPIPE_SZ``: a bigger pipe lets the producer run ahead of the compressor.
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1024 * 1024

Cancelled = Callable[[], bool]
Progress = Callable[[int], None]


class StreamCancelled(PermanentError):
    """The step was cancelled (timeout or interrupt) while data was streaming."""


def _never() -> bool:
    return False


def _grow_pipe(stream: IO[bytes] | None) -> None:
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)


class Child:
    """A child process in its own process group, with stdout and/or stdin as pipes.

    Its stderr is drained in a thread and the last lines kept for error messages. Leaving the
    ``with`` block with an exception kills the whole group, and so does ``watch`` (the step's
    cancellation) returning true; :meth:`finish` waits for it and raises :class:`PermanentError`
    naming the tool and its last stderr line when it failed. ``on_stderr`` sees each stderr line
    first; a line it returns true for (progress chatter) is not kept for error messages.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout: bool | IO[bytes] = False,
        stdin: bool | IO[bytes] = False,
        cwd: str | None = None,
        name: str | None = None,
        ok_codes: Sequence[int] = (0,),
        watch: Cancelled | None = None,
        on_stderr: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name or os.path.basename(argv[0])
        self._on_stderr = on_stderr
        self.ok_codes = tuple(ok_codes)
        full_env = child_env(env)
        out: Any = subprocess.PIPE if stdout is True else (stdout or subprocess.DEVNULL)
        inp: Any = subprocess.PIPE if stdin is True else (stdin or subprocess.DEVNULL)
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=inp,
                stdout=out,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        except OSError as exc:
            raise PermanentError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        _grow_pipe(self.proc.stdout)
        _grow_pipe(self.proc.stdin)
        self._tail: collections.deque[str] = collections.deque(maxlen=30)
        self._reader = threading.Thread(target=self._drain, daemon=True, name=f"{self.name}-stderr")
        self._reader.start()
        self.killed = False
        if watch is not None:
            threading.Thread(target=self._watch, args=(watch,), daemon=True, name=f"{self.name}-watch").start()

    def _watch(self, cancelled: Cancelled) -> None:
        """Kill the child as soon as the step is cancelled, even while the caller is blocked
        reading from or writing to it (the pipe then ends and the caller returns)."""
        while self.proc.poll() is None:
            if cancelled():
                self.killed = True
                self.kill()
                return
            time.sleep(0.1)

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None, "child started without stdout=True"
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None, "child started without stdin=True"
        return self.proc.stdin

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line and not (self._on_stderr is not None and self._on_stderr(line)):
                self._tail.append(line)
        self.proc.stderr.close()

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._tail)

    def last_error(self) -> str:
        """The most useful stderr line (errors first), for a one-line message."""
        lines = self.stderr_tail
        for line in reversed(lines):
            if "error" in line.lower() or "fatal" in line.lower() or "abort" in line.lower():
                return line
        return lines[-1] if lines else "no error output"

    def kill(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc, grace=1.0)

    def finish(self, *, cancelled: Cancelled = _never, what: str | None = None) -> int:
        """Wait for the child; raise unless it exited with an accepted code."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        while True:
            try:
                code = self.proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if cancelled():
                    self.kill()
                    raise StreamCancelled(f"{self.name} stopped: the step was cancelled") from None
        self._reader.join(timeout=2)
        if self.killed or cancelled():
            raise StreamCancelled(f"{self.name} stopped: the step was cancelled")
        if code not in self.ok_codes:
            doing = f" while {what}" if what else ""
            raise PermanentError(f"{self.name} failed{doing} (exit {code}): {self.last_error()}")
        return code

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.kill()
        for stream in (self.proc.stdout, self.proc.stdin):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        if exc_type is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


class HashingReader:
    """Wraps a binary stream; SHA-256 and byte count of everything read through it."""

    def __init__(self, raw: IO[bytes], progress: Progress | None = None) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.hash.update(data)
            self.size += len(data)
            if self._progress:
                self._progress(self.size)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read (and hash) whatever is left, e.g. after a decompression error."""
        while self.read(CHUNK):
            pass

    @property
    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def compress(
    src: IO[bytes],
    dst: IO[bytes] | Any,
    *,
    level: int = 3,
    threads: int = 2,
    cancelled: Cancelled = _never,
    progress: Progress | None = None,
) -> int:
    """zstd-compress ``src`` into ``dst`` (anything with ``write``) until EOF; returns bytes read.

    ``threads`` > 0 uses zstd's own worker threads, so compression runs beside the reading.
    """
    cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    total = 0
    with cctx.stream_writer(dst, closefd=False) as zw:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            zw.write(chunk)
            total += len(chunk)
            if progress:
                progress(total)
            if cancelled():
                raise StreamCancelled("cancelled while compressing")
    return total


def decompress(
    src: IO[bytes] | HashingReader,
    dst: IO[bytes] | Any,
    *,
    cancelled: Cancelled = _never,
    threaded: bool = True,
) -> int:
    """zstd-decompress ``src`` into ``dst`` until the end of the frame(s); returns bytes written.

    ``threaded``: writes happen in a second thread (at most 16 MiB in flight), so decompressing
    and writing overlap — as fast as the ``zstd`` tool when ``dst`` is a file."""
    dctx = zstandard.ZstdDecompressor()
    total = 0
    sink = _ThreadedWriter(dst) if threaded else None
    try:
        # zstandard only calls .read() on its source; a HashingReader is that duck-typed stream
        source = cast(IO[bytes], src)
        with dctx.stream_reader(source, read_size=CHUNK, read_across_frames=True, closefd=False) as reader:
            while True:
                chunk = reader.read(4 * CHUNK)
                if not chunk:
                    break
                if sink is not None:
                    sink.write(chunk)
                else:
                    dst.write(chunk)
                total += len(chunk)
                if cancelled():
                    raise StreamCancelled("cancelled while decompressing")
    finally:
        if sink is not None:
            sink.close()
    return total


class _ThreadedWriter:
    """Writes chunks to ``dst`` from a thread; a write error is raised in the caller."""

    def __init__(self, dst: Any, depth: int = 4) -> None:
        import queue

        self.dst = dst
        self.error: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, daemon=True, name="erpops-writer")
        self.thread.start()

    def _run(self) -> None:
        while True:
            chunk = self.queue.get()
            if chunk is None:
                return
            if self.error is None:
                try:
                    self.dst.write(chunk)
                except BaseException as exc:
                    self.error = exc

    def write(self, chunk: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(chunk)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


class CheckedFile:
    """A file held open from its SHA-256 check until its bytes are used, so what is used is what
    was checked: replacing or deleting the path meanwhile does not matter (this open file still
    reads the checked inode), and a write into the file changes its identity (size, mtime, ctime),
    which :meth:`unchanged` compares with the one seen when it was hashed.

    ```python
    checked = CheckedFile.hash(path)            # reads it once: sha256 and size
    if checked.sha256 != expected: ...
    if not checked.unchanged(): ...             # right before use
    decompress(checked.rewind(), out)
    ```
    """

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self.file = file
        self.identity = self._identity()
        self.sha256 = ""
        self.size = 0

    @classmethod
    def open(cls, path: Path) -> CheckedFile:
        return cls(path, open(path, "rb", buffering=CHUNK))

    @classmethod
    def hash(
        cls,
        path: Path,
        *,
        file: IO[bytes] | None = None,
        cancelled: Cancelled = _never,
        progress: Progress | None = None,
    ) -> CheckedFile:
        """Open ``path`` (or take ``file``, opened on it) and hash all of it. Raises
        :class:`PermanentError` when it is not a regular file or changed while being read."""
        checked = cls(path, file) if file is not None else cls.open(path)
        try:
            if not stat.S_ISREG(os.fstat(checked.file.fileno()).st_mode):
                raise PermanentError(f"{path} is not a regular file")
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(checked.file.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            digest, buf = hashlib.sha256(), bytearray(CHUNK)
            view = memoryview(buf)
            while n := checked.file.readinto(buf):  # type: ignore[attr-defined]  # a file opened "rb" has readinto; IO[bytes] does not declare it
                digest.update(view[:n])
                checked.size += n
                if progress:
                    progress(checked.size)
                if cancelled():
                    raise StreamCancelled(f"cancelled while checking {path}")
            checked.sha256 = digest.hexdigest()
            if not checked.unchanged():
                raise PermanentError(f"{path} changed while its checksum was computed; try again")
            checked.rewind()
            return checked
        except BaseException:
            checked.close()
            raise

    def _identity(self) -> tuple[int, ...]:
        st = os.fstat(self.file.fileno())
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def unchanged(self) -> bool:
        """True while nothing was written into the file since it was opened (or hashed)."""
        return self._identity() == self.identity

    def rewind(self) -> IO[bytes]:
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        self.file.close()


ZstdError = zstandard.ZstdError
