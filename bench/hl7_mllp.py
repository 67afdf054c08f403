"""Figures for the HL7 v2 feed (issue 8): MLLP messages/s ACKed after a durable commit, and mapping
messages/s per worker against hl7apy's full parse of the same messages.

    .venv/bin/python bench/hl7_mllp.py [--n 5000] [--db sqlite|postgres|both] [--map 2000] [--hl7apy 200]

Each database runs in its own child process (the settings read DATABASE_URL once): a scratch
SQLite file, or `switchboard_bench_hl7` on the local PostgreSQL (dropped and created here, dropped
after). The child migrates, creates a tenant, starts the listener (`MllpServer`) on a free port
in its own threads, with the in-process stub broker (messages are enqueued, nobody maps them
during the MLLP phase: the listener's work is what is measured), and then:

(a) MLLP: N messages (a mix of ADT A01/A08, SIU S12, ORU R01, MDM T02) sent by client processes
    over one connection, then over four; each client waits for the ACK before the next message,
    as MLLP senders do. Every ACK is checked to be AA, and every message to be in the table.
(b) mapping: `services.apply_pending` called once per message id, in order, as one worker meets
    the actors' messages (it maps and writes the waiting messages of the connection in batches of
    `APPLY_BATCH`, one transaction each; later ids find their message applied), over `--map` of
    those messages in this one process; `mapping.map_message` alone (the
    part that replaces a full parse); and hl7apy's `parse_message` with its defaults over the first
    `--hl7apy` of the same messages, as the baseline. Goal: ≥ 500 applied messages/s per worker.

SQLite runs in the embedded profile's WAL mode with synchronous=NORMAL (a commit survives a crash
of the process, not of the machine); PostgreSQL with its defaults (synchronous_commit on: each
commit is flushed to the WAL before the ACK).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = "postgres://postgres@127.0.0.1:5432"
POSTGRES_DATABASE = "switchboard_bench_hl7"
SEED = 20261122
GOAL_MLLP_PG = 1000  # messages/s ACKed after commit, PostgreSQL
GOAL_MAP = 500  # applied messages/s per worker

# --- messages -------------------------------------------------------------------------------------

_FAMILY = ("Smith", "Johnson", "O'Brien", "Garcia", "Nguyen", "Kowalski", "Okafor", "Patel", "Cohen", "Rivera")
_GIVEN = ("Mary", "James", "Ana", "Thanh", "Olu", "Priya", "Noah", "Elena", "Sam", "Grace")
_VITALS = (("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 160), ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 100),
           ("8867-4", "Heart rate", "/min", 55, 110), ("29463-7", "Body weight", "kg", 45, 120), ("8310-5", "Body temperature", "Cel", 36, 39))


def make_messages(n: int, run: str, seed: int = SEED) -> list[str]:
    """n realistic messages over n/5 patients; control ids unique per `run`."""
    rng = random.Random(seed)
    out = []
    patients = max(1, n // 5)
    for i in range(n):
        p = rng.randrange(patients)
        mrn = f"MRN{p:07d}"
        family, given = _FAMILY[p % 10], _GIVEN[(p // 10) % 10]
        stamp = f"2025{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(7, 18):02d}{rng.choice(('00', '15', '30', '45'))}00"
        kind = i % 5
        pid = (f"PID|1||{mrn}^^^GOODHEALTH^MR~{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}^^^SSA^SS||"
               f"{family}^{given}^Q||19{rng.randint(30, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}|{rng.choice('MF')}|||"
               f"{rng.randint(1, 999)} Main St^^Springfield^IL^627{rng.randint(10, 99)}^USA||^PRN^PH^^1^217^555{rng.randint(1000, 9999)}")
        visit = f"V{p:07d}{i % 3}"
        msh = "MSH|^~\\&|{app}|GOODHEALTH|SWITCHBOARD|HUB|" + stamp + "||{type}|" + f"{run}-{i:08d}|P|2.5.1"
        if kind in (0, 1):
            trigger = "A01" if kind == 0 else "A08"
            segs = [msh.format(app="EPICADT", type=f"ADT^{trigger}^ADT_A01"), f"EVN|{trigger}|{stamp}", pid,
                    f"PV1|1|I|3WEST^302^1||||1234^Adams^Peter|||MED||||1|||1234^Adams^Peter|IN|{visit}"]
        elif kind == 2:
            segs = [msh.format(app="SCHED", type="SIU^S12^SIU_S12"),
                    f"SCH|PL{i}|FL{i}|||||ROUTINE^Routine follow-up^HL70276|FOLLOWUP|30|MIN|^^30^{stamp}|||||||||||||||Booked",
                    pid, "RGS|1|A", f"AIS|1|A|99213^Office visit^CPT|{stamp}|0|MIN|30|MIN", "AIP|1|A|1234^Adams^Peter|D^Physician"]
        elif kind == 3:
            segs = [msh.format(app="VITALS", type="ORU^R01^ORU_R01"), pid, f"PV1|1|I|3WEST||||||||||||||||{visit}",
                    f"OBR|1|ORD{i}|RES{i}|85353-1^Vital signs panel^LN|||{stamp}"]
            for n_obx, (code, name, unit, low, high) in enumerate(_VITALS, start=1):
                segs.append(f"OBX|{n_obx}|NM|{code}^{name}^LN||{rng.randint(low, high)}|{unit}^{unit}^UCUM|||||F|||{stamp}")
        else:
            segs = [msh.format(app="TRANSCRIBE", type="MDM^T02^MDM_T02"), f"EVN|T02|{stamp}", pid, f"PV1|1|I|3WEST||||||||||||||||{visit}",
                    f"TXA|1|PN^Progress note|TX|{stamp}|1234^Adams^Peter||{stamp}|||||DOC{i}|||||AU|||||1234^Adams^Peter^^^^^^^^^^^^{stamp}",
                    "OBX|1|TX|11506-3^Progress note^LN||Seen for follow-up \\T\\ medication review.||||||F",
                    "OBX|2|TX|11506-3^Progress note^LN||Plan: continue current regimen.\\.br\\Return in 4 weeks.||||||F"]
        out.append("\r".join(segs) + "\r")
    return out


# --- clients (spawned processes: no Django) -----------------------------------------------------------

def _client(port: int, messages: list[str], ready, go, result) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ready.put(1)
    go.wait()
    bad = 0
    for text in messages:
        sock.sendall(b"\x0b" + text.encode() + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            data += chunk
        if b"MSA|AA|" not in data:
            bad += 1
    sock.close()
    result.put(bad)


def _send(port: int, messages: list[str], connections: int) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")
    result, ready, go = context.Queue(), context.Queue(), context.Event()
    shares = [messages[i::connections] for i in range(connections)]
    processes = [context.Process(target=_client, args=(port, share, ready, go, result)) for share in shares]
    for process in processes:
        process.start()
    for _ in processes:  # the clock starts when every client is connected: spawning is not the listener's cost
        ready.get(timeout=120)
    start = time.perf_counter()
    go.set()
    bad = sum(result.get(timeout=600) for _ in processes)
    seconds = time.perf_counter() - start
    for process in processes:
        process.join()
    return seconds, bad


# --- the child: one database --------------------------------------------------------------------------

def _environment(database: str, scratch: Path) -> None:
    for name in ("HUB_PROFILE", "SECRET_KEY", "DRAMATIQ_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hub.settings"
    os.environ["HUB_VAR_DIR"] = str(scratch)
    os.environ["DEBUG"] = "false"
    if database == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    else:
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
        os.environ["DATABASE_URL"] = f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}"


def _drop_postgres() -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")


def _child(database: str, n: int, map_n: int, hl7apy_n: int) -> int:
    with tempfile.TemporaryDirectory(prefix="sb-bench-hl7-") as scratch:
        _environment(database, Path(scratch))
        try:
            return _measure(database, n, map_n, hl7apy_n)
        finally:
            if database == "postgres":
                from django.db import connections

                connections.close_all()
                _drop_postgres()


def _measure(database: str, n: int, map_n: int, hl7apy_n: int) -> int:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import dramatiq
    from django.core.management import call_command
    from django.db import connection as db

    from connectors.hl7v2 import mapping, services
    from connectors.hl7v2.listener import MllpServer
    from connectors.hl7v2.models import Hl7Message
    from tenants.models import Tenant

    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.create(slug="bench", name="Bench", timezone="America/Chicago")
    server = MllpServer(("127.0.0.1", 0), tenant=tenant)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')")
            version, sync_commit, fsync = cursor.fetchone()
        label = f"PostgreSQL {version} (synchronous_commit={sync_commit}, fsync={fsync})"
    else:
        import sqlite3

        label = f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
    print(f"\n== {label}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")

    status = 0
    rates = {}
    _send(port, make_messages(50, "warm"), 1)  # warm up: imports, first connections
    for connections in (1, 4):
        messages = make_messages(n, f"c{connections}")
        before = Hl7Message.objects.count()
        seconds, bad = _send(port, messages, connections)
        kept = Hl7Message.objects.count() - before
        rates[connections] = n / seconds
        print(f"MLLP, {connections} connection{'s' if connections > 1 else ''}: {n:,} messages in {seconds:.2f} s = "
              f"{n / seconds:,.0f} messages/s ACKed after commit (non-AA: {bad}, rows kept: {kept:,})")
        if bad or kept != n:
            status = 1
    server.stop()
    dramatiq.get_broker().flush_all()  # the stub broker's queued apply messages: mapped below instead

    # (b) mapping, one worker (this process)
    from zoneinfo import ZoneInfo

    from hl7apy.parser import parse_message

    ids = list(Hl7Message.objects.filter(control_id__startswith="c1-").order_by("pk").values_list("pk", flat=True)[:map_n])
    texts = list(Hl7Message.objects.filter(pk__in=ids).order_by("pk").values_list("raw", flat=True))
    tz = ZoneInfo(tenant.timezone)
    start = time.perf_counter()
    for text in texts:
        mapping.map_message(text, tz)
    map_rate = len(texts) / (time.perf_counter() - start)
    sample = texts[:hl7apy_n]
    start = time.perf_counter()
    for text in sample:
        parse_message(text)
    hl7apy_rate = len(sample) / (time.perf_counter() - start)
    start = time.perf_counter()
    for message_id in ids:  # as a worker meets the actors' messages, one per message, in order
        services.apply_pending(message_id)
    apply_seconds = time.perf_counter() - start
    apply_rate = len(ids) / apply_seconds
    statuses = dict(Hl7Message.objects.filter(pk__in=ids).values_list("status").annotate(n=django.db.models.Count("pk")))
    print(f"hl7apy parse_message (defaults), {len(sample):,} messages: {hl7apy_rate:,.0f} messages/s (baseline)")
    print(f"map_message only, {len(texts):,} messages: {map_rate:,.0f} messages/s = {map_rate / hl7apy_rate:,.1f}x hl7apy's parse")
    print(f"apply_pending (map + upsert + status, batches of {services.APPLY_BATCH}), one worker, {len(ids):,} messages: "
          f"{apply_rate:,.0f} messages/s = {apply_rate / hl7apy_rate:,.1f}x hl7apy's parse; outcomes {statuses}")
    goals = [f"apply ≥ {GOAL_MAP}/s per worker: {'met' if apply_rate >= GOAL_MAP else 'NOT met'}"]
    if db.vendor == "postgresql":
        goals.insert(0, f"MLLP ≥ {GOAL_MLLP_PG}/s: 1 connection {'met' if rates[1] >= GOAL_MLLP_PG else 'NOT met'}, "
                        f"4 connections {'met' if rates[4] >= GOAL_MLLP_PG else 'NOT met'}")
    print("Goals: " + "; ".join(goals))
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per MLLP run")
    parser.add_argument("--map", type=int, default=2000, help="messages applied by one worker")
    parser.add_argument("--hl7apy", type=int, default=200, help="messages parsed by hl7apy (slow: ~60/s)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--child", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.n, args.map, args.hl7apy)
    status = 0
    for database in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        command = [sys.executable, str(Path(__file__).resolve()), "--child", database, "--n", str(args.n), "--map", str(args.map),
                   "--hl7apy", str(args.hl7apy)]
        status = status or subprocess.run(command, cwd=ROOT, check=False).returncode  # noqa: S603 (our own script)
    return status


if __name__ == "__main__":
    sys.exit(main())
