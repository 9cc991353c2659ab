"""The translator's commands: training with previews and resume, and a translated folder that
keeps every mask and id."""

import json
import os

import numpy as np
import pytest

import fake_archives as fa
from configs import cyclegan as cyclegan_config
from cps_jax import datasets


def test_translator_config_args_set_the_nets_sizes_and_steps():
    default = cyclegan_config.get_config().cyclegan
    assert (default.model.gen_width, default.model.gen_blocks, default.model.disc_width) == (16, 4, 16)
    config = cyclegan_config.get_config("width=24,blocks=6,disc_width=32,steps=3500").cyclegan
    assert (config.model.gen_width, config.model.gen_blocks, config.model.disc_width) == (24, 6, 32)
    assert (config.optim.total_steps, config.optim.decay_start) == (3500, 1750)
    with pytest.raises(ValueError, match="width=wide: expected an integer"):
        cyclegan_config.get_config("width=wide")


@pytest.mark.slow
def test_translator_trains_resumes_previews_and_translates_keeping_masks(tmp_path):
    from cps_jax.commands import cyclegan_train, cyclegan_translate
    from cps_jax.cyclegan import run

    config = cyclegan_config.get_config("runlocal")
    config.data.data_dir = config.data.source.data_dir = str(tmp_path / "data")
    workdir = str(tmp_path / "translator")
    run.train(config, workdir, until=2)  # stopped at step 2 ...
    last = cyclegan_train.train(config, workdir)  # ... and resumed to the end (4)
    logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [e["step"] for e in logged if "train/cycle_s" in e] == [2, 4]
    assert np.isfinite(last["rec_error_s"]) and "preview_rec_error_s" in last
    previews = sorted(os.listdir(os.path.join(workdir, "previews")))
    assert previews == ["step_2.png", "step_4.png"]
    grid = fa.decode(open(os.path.join(workdir, "previews", "step_4.png"), "rb").read())
    size = config.cyclegan.image_size
    assert grid.shape == (5 * size, 4 * size, 3)  # 5 rows (source, G, F(G), target, F) x 4 examples
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    assert os.path.getsize(os.path.join(workdir, "rec_error.png")) > 0  # the cycle's curves

    out = str(tmp_path / "translated")
    summary = cyclegan_translate.translate(workdir, out)
    source = datasets.load(config.data.source)
    assert summary["images"] == len(source.train) + len(source.validation)
    for split, sub in ((source.train, ""), (source.validation, "val")):
        for i in range(len(split)):
            ex = split[i]
            ident = ex["id"].decode()
            mask = fa.decode(open(os.path.join(out, sub, "masks", ident + ".png"), "rb").read())
            np.testing.assert_array_equal(mask, np.asarray(ex["mask"])[..., 0])  # masks unchanged
            image = fa.decode(open(os.path.join(out, sub, "images", ident + ".png"), "rb").read())
            assert image.shape == ex["image"].shape and not np.array_equal(image, ex["image"])
    # The folder is a source for adaptation, with the same classes and ids.
    config.data.source.name, config.data.source.folder = "image_folder", out
    config.data.source.classes = ()
    data = datasets.load(config.data)
    assert tuple(data.source.class_names) == tuple(source.class_names)
    assert sorted(data.source.train_ids()) == sorted(source.train_ids())
