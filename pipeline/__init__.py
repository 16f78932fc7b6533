"""Pure domain rules as data: states, transitions, handoff triggers, thresholds, cycle modes.

Nothing here does I/O, reads the clock or draws random numbers, so workflows may import it.
"""
