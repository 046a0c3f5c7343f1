"""Offline replay of logged events: sources, the feed, target policies, evaluation, reports."""
