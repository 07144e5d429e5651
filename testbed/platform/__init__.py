"""The trading platform: the market operator, each peer's smart agent and the controller as
processes that meet on an MQTT broker (Eclipse Mosquitto); see docs/platform.md.

- `topics`, `messages`: the versioned topics and the JSON schemas (pydantic) on them.
- `broker`, `credentials`: a mosquitto of our own (free loopback port, per-peer passwords and ACL,
  persistence, optional TLS).
- `signing`, `registry`: orders signed with each peer's Ed25519 key, checked against the registry.
- `operator`, `journal`: order intake, gate closure, clearing, settlement, the operator's journal.
- `agent_service`: one or several peers' agents in one process, each with its own MQTT session.
- `controller_link`: the engine's market port over the broker.
"""
