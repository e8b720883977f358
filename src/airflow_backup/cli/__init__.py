"""The ``airflow-backup`` command line."""

import os

# numpy (the index) starts one OpenBLAS thread per core when it is imported; the CLI never
# uses BLAS, and those threads took 0.5 % of a 1 GiB backup's CPU spinning (perf).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
