"""Run leases: a second run of a date refuses while the first runs, a dead run's lease
expires, `--take-over-lease` takes a live one. Real processes, plain files, no Spark
(except the Hadoop store's test)."""

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duia_spark.cli import main
from duia_spark.config import ConfigError
from duia_spark.run_lease import (
    HadoopLeaseStore,
    LeaseHeldError,
    LeaseRecord,
    LocalLeaseStore,
    hold_run_leases,
)

DAY = dt.date(2026, 1, 14)
PROJECT = Path(__file__).resolve().parents[2]

# Takes the lease of argv[2] under lakehouse root argv[1] (ttl argv[3], heartbeat
# argv[4]), says "held", sleeps; exits 3 with the reason if its lease is taken over.
HOLDER = """
import datetime as dt, sys, time
from duia_spark.cli import _sigterm_unwinds
from duia_spark.run_lease import LeaseError, LocalLeaseStore, hold_run_leases
store = LocalLeaseStore(sys.argv[1] + "/_leases")
day = dt.date.fromisoformat(sys.argv[2])
try:
    with _sigterm_unwinds(), hold_run_leases(
        store, [day], "duia nightly", float(sys.argv[3]), float(sys.argv[4])
    ):
        print("held", flush=True)
        time.sleep(60)
except LeaseError as e:
    print(f"stopped: {e}", flush=True)
    sys.exit(3)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process holding DAY's lease; yields a function (ttl, heartbeat) -> process."""
    procs = []

    def start(ttl=60.0, heartbeat=0.2, day=DAY):
        p = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / "lake"), day.isoformat(), str(ttl)]
            + [str(heartbeat)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT,
        )
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def store(tmp_path) -> LocalLeaseStore:
    return LocalLeaseStore(tmp_path / "lake" / "_leases")


def lease_file(tmp_path, day=DAY) -> Path:
    return tmp_path / "lake" / "_leases" / f"{day.isoformat()}.json"


def hold(tmp_path, ttl=60.0, heartbeat=0.2, take_over=False, day=DAY):
    return hold_run_leases(store(tmp_path), [day], "duia samples", ttl, heartbeat, take_over)


def test_a_second_run_of_the_date_refuses_naming_the_running_owner(tmp_path, holder):
    first = holder()
    before = lease_file(tmp_path).read_text()
    with pytest.raises(LeaseHeldError) as refused, hold(tmp_path):
        pytest.fail("the second run started")
    owner = json.loads(before)
    message = str(refused.value)
    assert f"pid {first.pid}" in message and socket.gethostname() in message
    assert owner["started_at"][:19] in message and "duia nightly" in message
    assert json.loads(lease_file(tmp_path).read_text())["token"] == owner["token"]


def test_a_second_duia_command_exits_3_in_one_line_and_writes_nothing(tmp_path, holder):
    first = holder()
    lake = tmp_path / "lake"
    run = subprocess.run(
        [sys.executable, "-m", "duia_spark.cli", "samples", "--date", DAY.isoformat()]
        + ["--lakehouse", str(lake)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=120,
    )
    assert run.returncode == 3
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("duia samples: refused: 2026-01-14 is being run by")
    assert f"pid {first.pid}" in line
    assert sorted(p.name for p in lake.iterdir()) == ["_leases"]


def test_the_process_that_holds_a_date_may_hold_it_again(tmp_path):
    with hold(tmp_path):
        with hold(tmp_path):  # the nightly's own stages, in-process
            pass
        assert lease_file(tmp_path).exists()
        # through the CLI too: backfill fails on its flags (exit 2), not on the lease (3)
        argv = ["backfill", "--date", "2026-01-14", "--end-date", "2026-01-13"]
        assert main([*argv, "--lakehouse", str(tmp_path / "lake")]) == 2
        assert lease_file(tmp_path).exists()
    assert not lease_file(tmp_path).exists()


def test_the_lease_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(RuntimeError), hold(tmp_path):
        raise RuntimeError("stage failed")
    assert not lease_file(tmp_path).exists()
    with hold(tmp_path):  # the next run starts
        pass


def test_a_range_command_leases_every_date_and_leaves_none_when_refused(tmp_path, holder):
    holder(day=DAY + dt.timedelta(days=1))
    argv = ["backfill", "--date", "2026-01-14", "--end-date", "2026-01-16"]
    assert main([*argv, "--lakehouse", str(tmp_path / "lake")]) == 3
    assert not lease_file(tmp_path).exists()  # 01-14 was taken, then let go
    assert not lease_file(tmp_path, DAY + dt.timedelta(days=2)).exists()


def test_a_lease_left_by_a_killed_run_expires_and_the_next_run_takes_over(tmp_path, holder):
    first = holder(ttl=2.0, heartbeat=0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert lease_file(tmp_path).exists()  # nothing released it
    with pytest.raises(LeaseHeldError), hold(tmp_path, ttl=2.0):  # its heartbeat is fresh
        pass
    time.sleep(2.5)
    with hold(tmp_path, ttl=2.0) as (record,):
        assert record.pid == os.getpid()
        assert json.loads(lease_file(tmp_path).read_text())["token"] == record.token
    assert not lease_file(tmp_path).exists()


def test_take_over_takes_a_live_lease_and_the_old_run_stops(tmp_path, holder):
    first = holder(ttl=60.0, heartbeat=0.2)
    with hold(tmp_path, take_over=True) as (record,):
        out, _ = first.communicate(timeout=30)
        assert first.returncode == 3
        assert f"taken over by host {socket.gethostname()} pid {os.getpid()}" in out
        assert json.loads(lease_file(tmp_path).read_text())["token"] == record.token
    assert not lease_file(tmp_path).exists()


def test_sigterm_releases_the_lease(tmp_path, holder):
    first = holder()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 128 + signal.SIGTERM
    assert not lease_file(tmp_path).exists()


def test_a_heartbeat_not_below_the_ttl_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match="ops.heartbeat_seconds"), hold(tmp_path, 10.0, 10.0):
        pass


def test_a_garbled_lease_file_ages_by_its_modification_time(tmp_path):
    path = lease_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("")  # a run killed between creating the file and writing it
    with pytest.raises(LeaseHeldError, match="being written"), hold(tmp_path, ttl=60.0):
        pass
    old = time.time() - 120
    os.utime(path, (old, old))
    with hold(tmp_path, ttl=60.0):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_leases_on_a_hadoop_filesystem_are_created_once(spark, tmp_path):
    hadoop = HadoopLeaseStore(spark, (tmp_path / "lake" / "_leases").as_uri())
    assert hadoop.create("x.json", "one") and not hadoop.create("x.json", "two")
    assert hadoop.read("x.json")[0] == "one"
    with hold_run_leases(hadoop, [DAY], "duia nightly", 60.0, 0.2) as (record,):
        time.sleep(0.5)  # a heartbeat or two through the JVM
        # the same folder, read as local files
        with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"), hold(tmp_path):
            pass
        assert _read_whole(hadoop, f"{DAY}.json").heartbeat_at > record.heartbeat_at
    assert hadoop.read(f"{DAY}.json") is None


def _read_whole(store, name: str) -> LeaseRecord:
    """The lease; a heartbeat caught between its create and its write is read again (on a
    Hadoop filesystem an overwrite is not atomic, so readers retry, as _take does)."""
    for _ in range(50):
        text, _ = store.read(name)
        record = LeaseRecord.from_json(text)
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"{name} never held a whole lease: {text!r}")
