"""The `sagabank` command: the local stack launcher and operator tools."""
