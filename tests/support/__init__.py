"""Engine-agnostic helpers for the test suite: tricky file trees and external tools.

Nothing in here imports ``airflow_backup``: these helpers must be usable to check the
engine against the real restic binary (and the comparator against restic itself).
"""
