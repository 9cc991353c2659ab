"""Cross Pseudo Supervision for semi-supervised semantic segmentation in JAX/Flax."""
