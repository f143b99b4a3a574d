"""A real single-node SLURM cluster for the tests (cluster.sh starts and stops it; cluster.py drives it)."""
