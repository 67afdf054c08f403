"""`make demo` as a newcomer runs it: set up, then log in and call the API against the served app."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_sets_up_and_serves(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DRAMATIQ_BROKER_URL", "HUB_PROFILE", "SECRET_KEY"}}
    env["HUB_VAR_DIR"] = str(tmp_path)
    port = free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = ""
        deadline = time.monotonic() + 90
        while "Partner key:" not in output and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            output += line
        key = re.search(r"Partner key:\s+(sb_live_\S+)", output).group(1)
        password = re.search(r"password: (\S+)", output).group(1)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert me.status_code == 200
        assert me.json()["tenant"] == "demo"
        mappings = httpx.get(f"{base}/api/v1/code-mappings/", headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
        assert {m["source_code"] for m in mappings["results"]} == {"PCS", "HHA", "SN", "PT", "RESP", "HOME"}

        # the main job ran: a full WellSky sync through Dramatiq equal to the sandbox, and an authorization-checked booking
        rows = re.findall(r"^  (\w+) +(\d+)   \[(\d+)\]$", output, re.MULTILINE)  # kind, in the hub, [in the sandbox]
        counts = {kind: (int(hub), int(source)) for kind, hub, source in rows}
        assert set(counts) == {"patient", "practitioner", "location", "authorization", "appointment", "encounter", "care_plan", "referral"}
        assert all(hub == source > 0 for hub, source in counts.values()), counts
        assert "Sync runs: 9 succeeded" in output and "Failed jobs open: 0" in output
        assert re.search(r"Booking that fits the authorization .*: booked: appointment [0-9a-f-]{36} \(WellSky AP\d+\)", output)
        assert re.search(r"Booking that exceeds the authorization .*: refused \(authorization_units_exceeded\)", output)
        # the clinic on eClinicalWorks: a polled sync equal to the sandbox, eligibility, and a claim round trip
        clinic = {kind: (int(hub), int(source)) for kind, hub, source in re.findall(r"^  clinic (\w+) +(\d+)   \[(\d+)\]$", output, re.MULTILINE)}
        assert set(clinic) == {"patient", "practitioner", "location", "appointment", "encounter"}
        assert all(hub == source > 0 for hub, source in clinic.values()), clinic
        eligibility = re.search(r"Eligibility checks \(270 → 271\): 30 patients: (.*)$", output, re.MULTILINE).group(1)
        assert all(status in eligibility for status in ("active", "inactive", "not_found")), eligibility
        assert re.search(r"837P batch \d+ sent to the clearinghouse \(\w+\); 999: accepted, \d+ claims accepted", output)
        assert re.search(r"^835 .* balanced$", output, re.MULTILINE) and "OUT OF BALANCE" not in output
        assert re.search(r"Claims after the 835: .*\d+ paid", output)
        assert float(re.search(r"Demo job done in ([\d.]+)s", output).group(1)) < 120
        patients = httpx.get(f"{base}/fhir/r4/Patient", params={"_count": 5}, headers={"Authorization": f"Bearer {key}"}, timeout=5)
        assert patients.status_code == 200 and len(patients.json()["entry"]) == 5

        with httpx.Client(base_url=base, timeout=5) as browser:
            login_page = browser.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
            logged_in = browser.post("/admin/login/?next=/admin/", data={"csrfmiddlewaretoken": token, "username": "admin",
                                                                         "password": password}, headers={"Referer": f"{base}/admin/login/"})
            assert logged_in.status_code == 302
            assert "Tenants and access" in browser.get("/admin/").text
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_demo_refuses_the_production_profile(tmp_path):
    env = {**os.environ, "HUB_VAR_DIR": str(tmp_path), "HUB_PROFILE": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/15", "SECRET_KEY": "x" * 60, "FERNET_KEYS": "k", "ALLOWED_HOSTS": "x"}
    result = subprocess.run([sys.executable, "manage.py", "demo", "--no-serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "The demo runs on the embedded default only" in result.stderr
