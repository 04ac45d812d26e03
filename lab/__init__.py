"""greenrt's deterministic lab: virtual time, seeded scheduling, simulated network,
oracles, hash-chained traces, replay and exploration."""

__version__ = "0.1.0"
