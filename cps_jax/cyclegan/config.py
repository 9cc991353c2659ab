"""CycleGAN's config: a CPU-sized default (`get_config`) and the paper's sizes (`paper_config`).

Fields (ml_collections.ConfigDict):
  image_size          side of the square training crops; the history pools hold images of
                      this size (the paper: 256 crops of 286 resized images).
  batch_size          images of each domain per step (the paper: 1).
  model.channels      image channels of both domains (3: RGB).
  model.gen_width     w of the ResNet generator: c7s1-w, d(2w), d(4w), R(4w) x gen_blocks,
                      u(2w), u(w), c7s1-channels (the paper: 64).
  model.gen_blocks    residual blocks (the paper: 9 at 256x256, 6 at 128x128).
  model.disc_width    the PatchGAN's first width: C(w), C(2w), C(4w), C(8w) (the paper: 64).
  model.disc_layers   stride-2 convs (3: the 70x70 PatchGAN; the widths stop doubling at 8w).
  loss.cycle_weight   lambda of the cycle loss (10).
  loss.identity_fraction  the identity loss's weight as a fraction of lambda (0.5: weight 5);
                      0 leaves the identity loss (and its images in the generator calls) out.
  pool_size           generated images per history pool (50); 0: no pool.
  optim.lr, b1, b2    Adam (2e-4, 0.5, 0.999), for all four nets.
  optim.total_steps   steps of the run; the learning rate reaches 0 there.
  optim.decay_start   step where the linear decay starts: half of total_steps unless set
                      (a reference, so an override of total_steps moves it along).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """The CPU-sized default: w=8, 2 residual blocks, discriminator width 8, 32x32 crops; the
    losses, pool and optimizer of the paper."""
    config = ml_collections.ConfigDict()
    config.image_size = 32
    config.batch_size = 1  # images of each domain per step (the paper: 1)
    config.model = ml_collections.ConfigDict(
        {"channels": 3, "gen_width": 8, "gen_blocks": 2, "disc_width": 8, "disc_layers": 3}
    )
    config.loss = ml_collections.ConfigDict({"cycle_weight": 10.0, "identity_fraction": 0.5})
    config.pool_size = 50
    config.optim = ml_collections.ConfigDict(
        {"lr": 2e-4, "b1": 0.5, "b2": 0.999, "total_steps": 1000}
    )
    config.optim.decay_start = config.optim.get_ref("total_steps") // 2
    return config


def paper_config(image_size: int = 256, steps_per_epoch: int = 1000) -> ml_collections.ConfigDict:
    """The paper's nets at `image_size` (9 residual blocks from 256 up, 6 below) and its schedule:
    200 epochs of `steps_per_epoch` steps (batch size 1: one step per training image), the
    decay over the second 100."""
    config = get_config()
    config.image_size = image_size
    config.model.gen_width = 64
    config.model.gen_blocks = 9 if image_size >= 256 else 6
    config.model.disc_width = 64
    config.optim.total_steps = 200 * steps_per_epoch
    return config
