"""The simulated WellSky vendor (see vendor.py for its surfaces and data.py for its agency)."""
