"""`stopbandit demo`: an embedded broker, the daemon and a simulated fleet on one machine."""
