"""The long-running daemon: the poll loop, partitions, checkpoints, publishing, HTTP, metrics."""
