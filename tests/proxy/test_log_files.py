"""Log files (proxy/log_files.py) and their writer thread (proxy/log_writer.py):
rotation by size and by UTC day, the kept count, following another process's
rotation, whole-line writes from several processes, bounded queues."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from proxy.log_files import PIPE_BUF, SECONDS_PER_DAY, LogFile, StderrSink, chunks
from proxy.log_writer import LineWriter


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def line(i: int, size: int = 100) -> bytes:
    head = f"line {i:06d} ".encode()
    return head + b"x" * (size - len(head) - 1) + b"\n"


def test_size_rotation_keeps_at_most_keep_files(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    f = LogFile(str(path), rotate_bytes=1000, keep=3)
    for i in range(55):  # 5500 bytes: rotations at 1000, 2000, ... -> 5 of them
        f.write_lines([line(i)])
    f.close()
    assert f.rotations == 5
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["access.log", "access.log.1", "access.log.2", "access.log.3"]
    # Newest first: access.log has the last lines, .1 the ten before, .3 the oldest kept.
    assert lines_of(path) == [line(i) for i in range(50, 55)]
    assert lines_of(tmp_path / "access.log.1") == [line(i) for i in range(40, 50)]
    assert lines_of(tmp_path / "access.log.3") == [line(i) for i in range(20, 30)]


def test_keep_zero_removes_the_full_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    f = LogFile(str(path), rotate_bytes=300, keep=0)
    for i in range(7):
        f.write_lines([line(i)])
    f.close()
    assert [p.name for p in tmp_path.iterdir()] == ["a.log"]
    assert lines_of(path) == [line(6)]


def test_daily_rotation_at_utc_midnight_with_an_injected_clock(tmp_path: Path) -> None:
    now = [20_000 * SECONDS_PER_DAY + SECONDS_PER_DAY - 1.0]  # 23:59:59 UTC
    path = tmp_path / "daily.log"
    f = LogFile(str(path), rotate_daily=True, keep=2, clock=lambda: now[0])
    f.write_lines([b"day one\n"])
    f.tick()
    assert f.rotations == 0
    now[0] += 2.0  # 00:00:01 the next day
    f.tick()  # the writer thread ticks on every wake, lines or not
    assert f.rotations == 1
    f.write_lines([b"day two\n"])
    now[0] += SECONDS_PER_DAY
    f.write_lines([b"day three\n"])  # a write after midnight rotates first
    now[0] += SECONDS_PER_DAY
    f.write_lines([b"day four\n"])
    f.close()
    assert f.rotations == 3
    assert lines_of(path) == [b"day four\n"]
    assert lines_of(tmp_path / "daily.log.1") == [b"day three\n"]
    assert lines_of(tmp_path / "daily.log.2") == [b"day two\n"]
    assert not (tmp_path / "daily.log.3").exists()  # keep = 2: "day one" is gone


def test_a_follower_reopens_after_another_process_rotated(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    leader = LogFile(str(path), rotate_bytes=250, keep=5)
    follower = LogFile(str(path), rotate_bytes=250, keep=5, rotates=False)
    follower.write_lines([line(0)])
    leader.write_lines([line(1)])
    leader.write_lines([line(2)])  # 300 bytes: the leader rotates
    assert leader.rotations == 1 and follower.rotations == 0
    follower.write_lines([line(3)])  # notices the new inode, writes to the new file
    follower.write_lines([line(4)])
    follower.write_lines([line(5)])  # a follower never rotates, whatever the size
    leader.close()
    follower.close()
    assert lines_of(tmp_path / "shared.log.1") == [line(0), line(1), line(2)]
    assert lines_of(path) == [line(3), line(4), line(5)]


def test_reopen_after_an_outside_rename(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    f = LogFile(str(path))
    f.write_lines([b"before\n"])
    os.rename(path, tmp_path / "x.log.old")
    f.write_lines([b"still old\n"])  # the held file, as logrotate expects until told
    f.reopen()
    f.write_lines([b"after\n"])
    f.close()
    assert lines_of(tmp_path / "x.log.old") == [b"before\n", b"still old\n"]
    assert lines_of(path) == [b"after\n"]


def test_chunks_are_whole_lines_within_the_limit() -> None:
    lines = [line(i, size) for i, size in enumerate([100, 3000, 1500, 4096, 10, 5000, 7])]
    pieces = chunks(lines, PIPE_BUF)
    assert b"".join(pieces) == b"".join(lines)
    for piece in pieces:
        assert piece.endswith(b"\n")
        assert len(piece) <= PIPE_BUF or piece.count(b"\n") == 1  # a lone long line


def test_stderr_sink_on_a_pipe_writes_pipe_buf_pieces() -> None:
    r, w = os.pipe()
    try:
        sink = StderrSink(w)
        assert sink.limit == PIPE_BUF
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(_read_all(r)))
        reader.start()
        lines = [line(i, 700) for i in range(40)]
        sink.write_lines(lines)
        os.close(w)
        reader.join(10)
        assert got == [b"".join(lines)]
    finally:
        os.close(r)


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


def test_processes_appending_to_one_file_never_interleave(tmp_path: Path) -> None:
    """Four processes append 300 batches of lines each: every line arrives whole."""
    path = tmp_path / "many.log"
    pids = []
    for p in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                f = LogFile(str(path), rotates=False)
                for b in range(300):
                    f.write_lines([f"p{p} b{b:03d} {i} ".encode() + b"y" * 180 + b"\n"
                                   for i in range(5)])
                f.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    got = lines_of(path)
    assert len(got) == 4 * 300 * 5
    assert all(ln.endswith(b"y" * 180 + b"\n") and ln.startswith(b"p") for ln in got)
    assert len(set(got)) == len(got)


class GatedSink:
    """A sink that holds its first write until released: a stalled disk."""

    name = "gated"
    rotations = 0

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.lines: list[bytes] = []
        self.fail = fail

    def write_lines(self, lines: list[bytes]) -> None:
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise OSError(28, "No space left on device")
        self.lines.extend(lines)

    def tick(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stalled_sink_drops_and_counts_beyond_the_bound() -> None:
    sink = GatedSink()
    w = LineWriter(sink, lambda item: b"%d\n" % item, name="test-log", max_queue=10,
                   batch=1, interval_s=0.01)
    try:
        w.put(0)
        assert sink.entered.wait(5)  # the thread holds item 0 in a write
        for i in range(1, 26):
            w.put(i)
        stats = w.stats()
        assert (stats["queued"], stats["dropped"]) == (10, 15)
        sink.gate.set()
        assert w.flush()
        assert sink.lines == [b"%d\n" % i for i in range(11)]
        assert w.stats()["written"] == 11 and w.stats()["dropped"] == 15
    finally:
        sink.gate.set()
        w.close()


def test_a_failing_sink_counts_lost_lines_and_reports_once() -> None:
    sink = GatedSink(fail=True)
    sink.gate.set()
    reports: list[str] = []
    w = LineWriter(sink, lambda item: b"%d\n" % item, name="test-log", batch=1,
                   interval_s=0.01, on_error=reports.append)
    try:
        for i in range(3):
            w.put(i)
            assert w.flush()
        stats = w.stats()
        assert stats["written"] == 0 and stats["dropped"] == 3 and stats["write_errors"] == 3
        assert len(reports) == 1 and "No space left on device" in reports[0]
    finally:
        w.close()


def test_a_formatting_error_loses_one_line_only() -> None:
    sink = GatedSink()
    sink.gate.set()

    def fmt(item: Any) -> bytes:
        if item == 1:
            raise ValueError("bad item")
        return b"%d\n" % item

    w = LineWriter(sink, fmt, name="test-log", interval_s=0.01)
    for i in range(3):
        w.put(i)
    assert w.flush()
    w.close()
    assert sink.lines == [b"0\n", b"2\n"] and w.stats()["dropped"] == 1


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "closing.log"
    w = LineWriter(LogFile(str(path)), lambda item: item, name="test-log", interval_s=60)
    for i in range(100):
        w.put(line(i))
    w.close()  # the thread sleeps 60 s between batches: close wakes it and waits
    assert lines_of(path) == [line(i) for i in range(100)]
