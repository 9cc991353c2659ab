"""`python -m cps_jax.data.synthetic_streets`: the command line of `cli.py`."""

from cps_jax.data.synthetic_streets.cli import main

main()
