"""Tables describing the lab's devices that both the drivers and the emulated plant import.

Register maps come from the SunSpec standard (pysunspec2); what no standard fixes (the EV charger's
OPC UA node set, the programmable load's SCPI command set) is defined here exactly once.
"""
