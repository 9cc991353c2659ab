r"""A CycleGAN translator from the `render` source of configs/adapt.py to its `photo` target
(synthetic_streets, 64 x 128 scenes, no labels used), CPU-sized; then the translated source.

  cps-cyclegan-train --config configs/cyclegan.py --workdir runs/translator
  cps-cyclegan-translate --workdir runs/translator --output runs/render_as_photo
  cps-train --config configs/adapt.py:method=source_only,target=photo,source=runs/render_as_photo \
      --workdir runs/translated_source_only

Args: target=photo|weather, steps (9000), width (16: the generator's first width, the paper's
64), blocks (4: residual blocks, the paper's 6 at 128 px), disc_width (16, the paper's 64), seed,
runlocal (tiny, for the tests).

9000 steps (about 35 min on one CPU core): trained 3000 steps, the translator still blurs edges
and lane markings, and source-only training on its translated source gains far less (README,
"Input-level adaptation: CycleGAN", the translators compared).
"""

from cps_jax import config_files

common = config_files.sibling(__file__, "common")
adapt = config_files.sibling(__file__, "adapt")

CONFIG_FILE = "configs/cyclegan.py"
ARGS = {
    "target": "photo",
    "steps": 9000,
    "width": 16,
    "blocks": 4,
    "disc_width": 16,
    "seed": 0,
    "runlocal": False,
}


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, ARGS, CONFIG_FILE)
    # The domains exactly as the adaptation runs see them (classes included, for the masks the
    # translated folder keeps).
    config = adapt.get_config(f"method=source_only,target={args['target']},seed={args['seed']}")
    cg = config.cyclegan
    cg.image_size, cg.batch_size = 64, 1
    cg.model.gen_width, cg.model.gen_blocks = args["width"], args["blocks"]
    cg.model.disc_width = args["disc_width"]
    cg.optim.total_steps = args["steps"]
    config.log_every, config.eval_every = 100, 500
    config.checkpoint_every = 500
    if args["runlocal"]:
        for data in (config.data, config.data.source):
            data.height, data.width, data.num_train, data.num_validation = 32, 64, 8, 4
        cg.image_size = 16
        cg.model.gen_width, cg.model.gen_blocks, cg.model.disc_width = 4, 1, 4
        cg.pool_size = 3
        cg.optim.total_steps = 4
        config.log_every = config.eval_every = config.checkpoint_every = 2
    return config
