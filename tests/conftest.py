import os

# Tests run on the CPU; several simulated devices let sharding code paths run for real.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
