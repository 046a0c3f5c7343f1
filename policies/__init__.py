"""Policies: the wire object, the exploration rule, the builder, and the serving-node client."""
