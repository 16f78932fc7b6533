"""Simulated agents (prospector, hygiene, researcher, outreach): stand-ins for the real agents,
built on the agent SDK. Arrives with the simulation issue; nothing here yet."""
