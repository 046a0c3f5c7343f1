"""Simulated fleets: scenarios, the request generator, in-process simulation, the broker fleet."""
