"""The sync daemon: the loop, its triggers, its HTTP surface and its status."""
