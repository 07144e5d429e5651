"""Example site files (TOML): the default IIT Gandhinagar testbed and a 12-home community."""
