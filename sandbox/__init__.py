"""Local simulators of the vendors Switchboard connects to, served over HTTP on loopback.

A separate program: `python manage.py sandbox` runs it, and the hub's own code never imports it
(tests/test_sandbox_boundary.py enforces this). Data is generated deterministically from a seed,
faults are switched per run through `/_sandbox/faults`, and `/_sandbox/state` tells the truth a
sync is checked against.
"""
