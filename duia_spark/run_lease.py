"""Run leases: one run of a date at a time.

A command for date D (`duia nightly --date D`, `duia samples --date D`, ...) first takes
the lease `<lakehouse.root>/_leases/D.json`, a small JSON record naming its owner (host,
pid, start time, command) with a heartbeat that a daemon thread refreshes every
`ops.heartbeat_seconds`. A second command for D finds the file and refuses at once,
naming the owner, before it writes anything. The lease is released (its file deleted)
when the command ends, on failure too.

A run that was killed leaves its lease behind, but nothing refreshes it: once its
heartbeat is older than `ops.lease_ttl_seconds` the next run takes it over. A live lease
is taken over only when asked (`--take-over-lease`); the run that held it sees at its
next heartbeat that the lease is gone and stops (its main thread is interrupted as by
Ctrl-C, which also cancels its Spark jobs).

Leases are re-entrant within a process: the nightly runs its stages in-process, and a
second hold of a date this process already holds only counts up.

Creation is atomic: on a local or mounted filesystem with O_CREAT | O_EXCL; on
`hdfs://`, `abfs://`, ... with Hadoop's `FileSystem.create(path, overwrite=false)`
through Spark's JVM, which is atomic on HDFS and ABFS. S3 (`s3a://`) has no atomic
create-if-absent: there two runs started within the same moment can both take the
lease, so a scheduler that runs one attempt at a time remains the guard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from duia_spark.config import ConfigError

LEASE_DIR = "_leases"


class LeaseError(RuntimeError):
    """A date's lease cannot be held by this run."""


class LeaseHeldError(LeaseError):
    """Another live run holds the date."""


class LeaseLostError(LeaseError):
    """The lease this run held was taken over by another run."""


def _now() -> float:
    return time.time()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class LeaseRecord:
    """What a lease file holds."""

    run_date: str
    command: str
    host: str
    pid: int
    started_at: str  # UTC, ISO 8601
    heartbeat_at: str
    token: str  # tells this holder's file from a later holder's

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LeaseRecord | None:
        """The record, or None for a file that is empty or not a lease (a crash between
        create and write; its age then comes from the file's modification time)."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None

    def heartbeat_epoch(self) -> float:
        return dt.datetime.fromisoformat(self.heartbeat_at).timestamp()

    def owner(self) -> str:
        return f"host {self.host} pid {self.pid} since {self.started_at[:19]}Z ({self.command})"


class LeaseStore(Protocol):
    """The few file operations a lease needs, on one folder."""

    def location(self, name: str) -> str: ...

    def create(self, name: str, text: str) -> bool:
        """Write a new file; False when it exists already (atomically)."""

    def read(self, name: str) -> tuple[str, float] | None:
        """(text, modification time as epoch seconds), or None when absent."""

    def overwrite(self, name: str, text: str) -> None: ...

    def rename(self, name: str, new_name: str) -> bool:
        """False when `name` is absent."""

    def delete(self, name: str) -> None: ...


class LocalLeaseStore:
    """Leases in a local (or mounted) folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def location(self, name: str) -> str:
        return str(self.folder / name)

    def create(self, name: str, text: str) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def read(self, name: str) -> tuple[str, float] | None:
        path = self.folder / name
        try:
            return path.read_text(encoding="utf-8"), path.stat().st_mtime
        except FileNotFoundError:
            return None

    def overwrite(self, name: str, text: str) -> None:
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.folder / name)  # readers see the old or the new text, whole

    def rename(self, name: str, new_name: str) -> bool:
        try:
            os.rename(self.folder / name, self.folder / new_name)
        except FileNotFoundError:
            return False
        return True

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / name).unlink()


class HadoopLeaseStore:
    """Leases on any Hadoop filesystem (hdfs://, abfs://, s3a://, ...) through Spark's JVM."""

    def __init__(self, spark: Any, folder: str):
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()
        self.folder = folder.rstrip("/")
        self._fs = self._path(LEASE_DIR).getFileSystem(self._conf)

    def _path(self, name: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(self.location(name))

    def location(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def _write(self, name: str, text: str, overwrite: bool) -> None:
        out = self._fs.create(self._path(name), overwrite)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def create(self, name: str, text: str) -> bool:
        try:
            self._write(name, text, overwrite=False)
        except Exception as e:  # Py4JJavaError wrapping FileAlreadyExistsException
            if self._fs.exists(self._path(name)):
                return False
            raise LeaseError(f"cannot create lease {self.location(name)}: {e}") from e
        return True

    def read(self, name: str) -> tuple[str, float] | None:
        path = self._path(name)
        try:
            status = self._fs.getFileStatus(path)
            stream = self._fs.open(path)
        except Exception:  # FileNotFoundException
            return None
        try:
            text = self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        return text, status.getModificationTime() / 1000

    def overwrite(self, name: str, text: str) -> None:
        self._write(name, text, overwrite=True)

    def rename(self, name: str, new_name: str) -> bool:
        return bool(self._fs.rename(self._path(name), self._path(new_name)))

    def delete(self, name: str) -> None:
        self._fs.delete(self._path(name), False)


def lease_store(root: str, spark_factory: Callable[[], Any]) -> LeaseStore:
    """The store of `<root>/_leases`: a local folder, or Hadoop's filesystem for a URI
    (Spark's session is built only then)."""
    if "://" not in root or root.startswith("file:"):
        return LocalLeaseStore(Path(root.removeprefix("file://").removeprefix("file:")) / LEASE_DIR)
    return HadoopLeaseStore(spark_factory(), f"{root.rstrip('/')}/{LEASE_DIR}")


@dataclass
class _Held:
    store: LeaseStore
    name: str
    record: LeaseRecord
    count: int = 1
    lost_to: str | None = None  # who took it over


_HELD: dict[str, _Held] = {}  # lease location → the lease this process holds
_HELD_LOCK = threading.Lock()
_LOST: list[str] = []  # one line per lease this process lost to a take-over


def lost_leases() -> list[str]:
    """Why this process was interrupted, if a lease it held was taken over (for the CLI)."""
    return list(_LOST)


def _age(found: tuple[str, float], now: float) -> tuple[LeaseRecord | None, float]:
    record = LeaseRecord.from_json(found[0])
    return record, now - (record.heartbeat_epoch() if record else found[1])


def _describe(record: LeaseRecord | None, age: float) -> str:
    who = record.owner() if record else "a run whose lease file is being written"
    return f"{who}, heartbeat {age:.0f}s ago"


def _take(
    store: LeaseStore, day: str, command: str, ttl: float, take_over: bool, started: float
) -> LeaseRecord:
    """Create the lease file of `day`, taking over an expired one (or any, `take_over`)."""
    name = f"{day}.json"
    mine = LeaseRecord(
        run_date=day,
        command=command,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=_iso(started),
        heartbeat_at=_iso(_now()),
        token=uuid.uuid4().hex,
    )
    for attempt in range(5):
        if store.create(name, mine.to_json()):
            return mine
        found = store.read(name)
        if found is None:
            continue  # released in between: try again
        record, age = _age(found, _now())
        if record is None and age <= ttl and not take_over and attempt < 4:
            # Caught between a Hadoop overwrite's create and write (or a create and its
            # write): look again, to name the run that holds it.
            time.sleep(0.1)
            continue
        if age <= ttl and not take_over:
            raise LeaseHeldError(
                f"{day} is being run by {_describe(record, age)}; not started "
                f"(--take-over-lease takes it over if that run is dead)"
            )
        # Move the old lease aside, then check it is the one judged above: between the
        # read and the move its owner may have refreshed it, or another run taken it.
        aside = f"{name}.{mine.token}.taken-over"
        if not store.rename(name, aside):
            continue
        moved = store.read(aside)
        store.delete(aside)
        moved_record, moved_age = _age(moved, _now()) if moved else (None, float("inf"))
        if moved_age <= ttl and not take_over:
            if moved is not None:
                store.create(name, moved[0])  # put the live lease back
            raise LeaseHeldError(
                f"{day} is being run by {_describe(moved_record, moved_age)}; not started"
            )
        how = "took over" if moved_age <= ttl else "took over expired lease of"
        print(f"[lease] {day}: {how} {_describe(moved_record, moved_age)}", file=sys.stderr)
    raise LeaseHeldError(f"{day}: could not take the lease {store.location(name)}; not started")


def _refresh(held: _Held) -> bool:
    """Rewrite the heartbeat; False (and the lease marked lost) when another run holds it."""
    found = held.store.read(held.name)
    record = LeaseRecord.from_json(found[0]) if found else None
    if record is None or record.token != held.record.token:
        held.lost_to = record.owner() if record else "another run (the lease file is gone)"
        return False
    held.record = replace(held.record, heartbeat_at=_iso(_now()))
    held.store.overwrite(held.name, held.record.to_json())
    return True


def _heartbeat(leases: list[_Held], every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        for held in leases:
            try:
                ok = _refresh(held)
            except Exception as e:  # a flaky filesystem: try again next beat
                print(f"[lease] {held.record.run_date}: heartbeat failed: {e}", file=sys.stderr)
                continue
            if not ok:
                _LOST.append(
                    f"the lease on {held.record.run_date} was taken over by {held.lost_to}"
                )
                print(f"[lease] {_LOST[-1]}; stopping this run", file=sys.stderr, flush=True)
                # Ctrl-C to the main thread: a blocking call returns, PySpark cancels its jobs.
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return


@contextlib.contextmanager
def hold_run_leases(
    store: LeaseStore,
    dates: Sequence[dt.date],
    command: str,
    ttl_seconds: float,
    heartbeat_seconds: float,
    take_over: bool = False,
) -> Iterator[list[LeaseRecord]]:
    """Hold the lease of every date in `dates` while the block runs (re-entrant).

    Raises LeaseHeldError at once, holding nothing, when another live run holds one of
    them; LeaseLostError when the block is interrupted because a lease was taken over.
    """
    if not 0 < heartbeat_seconds < ttl_seconds:
        raise ConfigError(
            f"ops.heartbeat_seconds ({heartbeat_seconds}) must be above 0 and below "
            f"ops.lease_ttl_seconds ({ttl_seconds})"
        )
    started = _now()
    mine: list[_Held] = []  # taken here (released here); the rest were held already
    counted: list[_Held] = []
    try:
        for day in sorted(set(dates)):
            name = f"{day.isoformat()}.json"
            with _HELD_LOCK:
                held = _HELD.get(store.location(name))
                if held is not None and not held.lost_to:
                    held.count += 1
                    counted.append(held)
                    continue
            record = _take(store, day.isoformat(), command, ttl_seconds, take_over, started)
            held = _Held(store, name, record)
            with _HELD_LOCK:
                _HELD[store.location(name)] = held
            mine.append(held)
    except BaseException:
        _release(mine, counted)
        raise
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(mine, heartbeat_seconds, stop), name="lease-heartbeat", daemon=True
    )
    if mine:
        beat.start()
    try:
        yield [h.record for h in [*mine, *counted]]
    except KeyboardInterrupt as e:
        if _LOST:
            raise LeaseLostError(_LOST[-1]) from e
        raise
    finally:
        stop.set()
        if mine:
            beat.join(timeout=10)
        _release(mine, counted)


def _release(mine: list[_Held], counted: list[_Held]) -> None:
    with _HELD_LOCK:
        for held in counted:
            held.count -= 1
        for held in mine:
            held.count -= 1
            if held.count > 0:
                continue
            _HELD.pop(held.store.location(held.name), None)
            if held.lost_to:
                continue  # the file is another run's now
            found = held.store.read(held.name)
            record = LeaseRecord.from_json(found[0]) if found else None
            if record is not None and record.token == held.record.token:
                held.store.delete(held.name)
