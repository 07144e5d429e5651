"""Physics of the emulated plant: profiles precomputed per day, devices stepped with one dt.

Every module here is pure computation (no I/O, no clock): `solar` and `loads` build a day's
profiles as arrays, `profiles` caches and interpolates them, `battery` integrates stored energy,
`inverter` and `ev` apply the devices' control semantics, `feeder` solves the radial power flow.
"""
