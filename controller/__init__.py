"""The controller: config, reward, learners, the daemon loop, simulate, replay, the CLI."""
