"""Beam pipeline entry points and the `rex` command line."""
