"""Training methods as plug-ins: a registry of `Method`s (base.py), one module per family.

Adding a method is one module that builds a `Method` and `register`s it, plus its import below.
"""

from cps_jax.methods.base import STREAMS, Aux, Method, get, names, register, unregister

# The families; importing them registers their methods.
from cps_jax.methods import adaptation, adversarial, cps, mean_teacher, pct, supervised  # noqa: E402,F401  isort: skip
