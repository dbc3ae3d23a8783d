"""The small wrapper over GitPython the daemon and `botreg review` need."""
