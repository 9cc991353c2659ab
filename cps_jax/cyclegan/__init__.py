"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation, the core without commands.

config.py   get_config() (CPU-sized) / paper_config(): every field, documented.
nets.py     ResNet generator, 70x70 PatchGAN, init / apply as pure functions, translate().
losses.py   LS-GAN, cycle and identity losses.
pool.py     the 50-image history pool as arrays in the state.
optim.py    Adam with the constant-then-linear-decay schedule.
state.py    the train state: nets G, F, D_S, D_T, their optimizer states, the pools.
step.py     the pure train step.
"""
