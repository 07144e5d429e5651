"""The emulated plant: physics of the three-peer testbed behind real protocol servers.

Imports nothing of the controller (testbed, instruments, peers, dashboards).
"""
