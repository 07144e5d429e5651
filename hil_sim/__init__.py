"""The emulated plant: physics of the three-peer testbed behind real protocol servers.

Imports nothing of the controller (testbed, instruments, peers, dashboards).

The plant's numpy work is small (the feeder's matrix-vector products, one per sweep); a BLAS thread
pool makes it slower, many times so on a busy machine (a 100-home feeder's sweep took 20 ms instead
of microseconds), so the plant asks for one BLAS thread unless the environment says otherwise.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
