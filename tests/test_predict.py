"""cps-export and cps-predict: model files, images of any kind and size, unreadable files; cps-eval
of several checkpoints; the best and last figures."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from cps_jax import checkpointing, evaluate, export, predict, restore
from cps_jax.commands import evaluate as cps_eval
from cps_jax.commands import export as cps_export
from cps_jax.commands import predict as cps_predict
from cps_jax.errors import ConfigError
from cps_jax.data import synthetic_streets
from cps_jax.data.transforms import normalize
from cps_jax import optim
from cps_jax.models.functional import apply_net
from cps_jax.state import create_train_state
from cps_jax.trainer import checkpoint_dir
from configs import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = len(synthetic_streets.CLASS_NAMES)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = demo.get_config("runlocal")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    return config


@pytest.fixture(scope="module")
def workdir(config, tmp_path_factory):
    """Two checkpoints of untrained nets: step 2 (mIoU 0.5, the best) and step 4 (0.3, the last)."""
    workdir = str(tmp_path_factory.mktemp("run"))
    tx, _ = optim.make(config.optim, config.total_steps)
    state = jax.jit(lambda r: create_train_state(config.model, NUM_CLASSES, tx, r))(
        jax.random.key_data(jax.random.key(0))
    )
    left = state.nets["left"]
    flipped = dict(left, params=jax.tree.map(lambda p: -p, left["params"]))
    later = state.replace(nets=dict(state.nets, left=flipped))
    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir))
    checkpointer.save(2, state, metrics={"miou": 0.5})
    checkpointer.save(4, later, metrics={"miou": 0.3})
    checkpointer.wait()
    checkpointer.close()
    return workdir


def _write_images(folder):
    """Grey, RGBA and palette PNGs, an RGB JPEG, in two sizes; a corrupt PNG; a text file."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
    pixels = lambda h, w, c: rng.integers(0, 256, (h, w, c), dtype=np.uint8)  # noqa: E731
    Image.fromarray(pixels(20, 30, 1)[..., 0], "L").save(os.path.join(folder, "grey.png"))
    Image.fromarray(pixels(20, 30, 4), "RGBA").save(os.path.join(folder, "rgba.png"))
    Image.fromarray(pixels(26, 18, 3)).save(os.path.join(folder, "photo.jpg"), quality=90)
    Image.fromarray(pixels(26, 18, 3)).convert("P").save(os.path.join(folder, "sub", "pal.png"))
    with open(os.path.join(folder, "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image")
    return ["grey", "rgba", "photo", os.path.join("sub", "pal")]


def _read(path):
    return np.asarray(Image.open(path))


@pytest.mark.slow
def test_export_then_predict_equals_predicting_from_the_checkpoint(config, workdir, tmp_path):
    path = cps_export.export_model(
        config, workdir, step="best", net="both", output=str(tmp_path / "m.cpsj")
    )
    model = export.load(path)
    assert model.step == 2 and set(model.nets) == {"left", "right"}
    assert model.class_names == synthetic_streets.CLASS_NAMES
    np.testing.assert_array_equal(model.palette, synthetic_streets.PALETTE)
    _, restored = restore.restore_nets(
        config, workdir, NUM_CLASSES, jax.sharding.Mesh(jax.devices(), ("data",)), 2
    )
    for a, b in zip(jax.tree.leaves(model.nets), jax.tree.leaves(jax.device_get(restored))):
        np.testing.assert_array_equal(a, b)

    names = _write_images(tmp_path / "in")
    outs = {}
    for source, loaded in {
        "file": cps_predict.load_model(model_file=path, net="both"),
        "checkpoint": cps_predict.load_model(
            config=config, workdir=workdir, step="best", net="both"
        ),
    }.items():
        outs[source] = str(tmp_path / source)
        failed = cps_predict.predict(loaded, str(tmp_path / "in"), outs[source], progress=False)
        assert [os.path.basename(p) for p, _ in failed] == ["corrupt.png"]
    for kind in predict.OUTPUTS:
        for name in names:
            np.testing.assert_array_equal(
                _read(os.path.join(outs["file"], kind, name + ".png")),
                _read(os.path.join(outs["checkpoint"], kind, name + ".png")),
            )


@pytest.mark.slow
def test_model_files_name_what_is_wrong(config, workdir, tmp_path):
    path = cps_export.export_model(
        config, workdir, step="latest", net="left", output=str(tmp_path / "l.cpsj")
    )
    assert export.load(path).step == 4
    with pytest.raises(ConfigError, match=r"--net=right: .*l\.cpsj has no right net"):
        cps_predict.load_model(model_file=path, net="right")
    (tmp_path / "junk.cpsj").write_bytes(b"\x00\x01 not msgpack")
    with pytest.raises(ConfigError, match="not a cps_jax model file"):
        cps_predict.load_model(model_file=str(tmp_path / "junk.cpsj"))
    with pytest.raises(ValueError, match="--input .*no image files"):
        predict.find_images(str(tmp_path / "nothing*.png"))
    with pytest.raises(ConfigError, match="--window"):
        cps_predict.predict(
            export.load(path),
            path,
            str(tmp_path / "o"),
            overrides={"mode": "sliding", "window": (0, 3)},
        )


@pytest.mark.slow
def test_predict_command_on_mixed_images_writes_the_nets_predictions_and_fails_on_corrupt(
    config, workdir, tmp_path
):
    model_path = cps_export.export_model(
        config, workdir, step="best", net="left", output=str(tmp_path / "m.cpsj")
    )
    names = _write_images(tmp_path / "in")
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cps_jax.commands.predict import main; main()",
            f"--model={model_path}",
            f"--input={tmp_path / 'in'}",
            f"--output={out}",
            "--batch_size=2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode != 0
    assert "corrupt.png" in run.stderr and "could not be read" in run.stderr
    assert "Wrote 4 of 5 image(s)" in run.stdout
    assert not os.path.exists(out / "labels" / "corrupt.png")

    model = export.load(model_path)
    graphdef, net = model.graphdef(), model.nets["left"]
    sources = {
        "grey": "grey.png",
        "rgba": "rgba.png",
        "photo": "photo.jpg",
        "sub/pal": "sub/pal.png",
    }
    for name in names:
        rgb = np.asarray(
            Image.open(tmp_path / "in" / sources[name.replace(os.sep, "/")]).convert("RGB")
        )
        logits = np.asarray(
            apply_net(
                graphdef, net["params"], net["batch_stats"], normalize(rgb)[None], train=False
            )[0][0]
        )
        labels = _read(out / "labels" / f"{name}.png")
        assert labels.shape == rgb.shape[:2]
        top2 = np.sort(logits, -1)[..., -2:]
        clear = top2[..., 1] - top2[..., 0] > 1e-4  # ties may fall either way
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(labels[clear], logits.argmax(-1)[clear])
        colour = _read(out / "color" / f"{name}.png")
        np.testing.assert_array_equal(colour, model.palette[labels])
        overlay = _read(out / "overlay" / f"{name}.png")
        np.testing.assert_array_equal(overlay, np.round(0.5 * rgb + 0.5 * colour).astype(np.uint8))


@pytest.mark.slow
def test_eval_of_best_and_latest_and_the_trainers_report(config, workdir, capsys):
    out = cps_eval.evaluate(config, workdir, step="best,latest")
    assert [(w, s) for w, (s, _) in out.items()] == [("best", 2), ("latest", 4)]
    printed = capsys.readouterr().out
    best, latest = out["best"][1]["left"]["miou"], out["latest"][1]["left"]["miou"]
    assert f"best (step 2) {100 * best:.2f}, latest (step 4) {100 * latest:.2f}" in printed
    assert os.path.exists(os.path.join(workdir, "eval_validation_2.md"))
    assert os.path.exists(os.path.join(workdir, "eval_validation_4.md"))
    with pytest.raises(ConfigError, match="--step='best,soon'"):
        cps_eval.parse_steps("best,soon")

    checkpointer = checkpointing.Checkpointer(checkpoint_dir(workdir), read_only=True)
    best_ckpt = evaluate.best_checkpoint(checkpointer)
    assert best_ckpt == {"step": 2, "miou": 0.5}
    line = evaluate.best_and_last_line(best_ckpt, 4, {"left": {"miou": 0.3}})
    assert line == "left mIoU: last (step 4) 30.00, best (step 2) 50.00"


def _png_16_bit_rgb(array: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow writes none): [H, W, 3] uint16."""
    import struct
    import zlib

    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, colour type 2: RGB
    chunks = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(raw)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def test_16_bit_images_are_scaled_to_8_bits_for_training_and_prediction(tmp_path):
    """Not clipped at 255 (which would binarise them): value v of 65535 becomes v / 257."""
    import io

    from cps_jax.data import archives

    ramp = (np.arange(20 * 30).reshape(20, 30) * 109).astype(np.uint16)  # 0 .. 65291
    grey = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(grey)
    assert Image.open(grey).mode == "I;16"
    expected = np.repeat(np.round(ramp / 257.0).astype(np.uint8)[..., None], 3, -1)
    np.testing.assert_array_equal(predict.read_rgb(str(grey)), expected)
    stored, hw = archives.rgb_image(grey.read_bytes(), str(grey))
    assert hw == (20, 30)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored))), expected)
    # 16-bit colour: Pillow reads the high bytes; stored re-encoded at 8 bits, as predicted.
    colour = tmp_path / "rgb16.png"
    colour.write_bytes(_png_16_bit_rgb(np.stack([ramp, ramp // 2, 65535 - ramp], -1)))
    stored, _ = archives.rgb_image(colour.read_bytes(), str(colour))
    decoded = np.asarray(Image.open(io.BytesIO(stored)))
    assert decoded.dtype == np.uint8 and decoded.shape == (20, 30, 3)
    np.testing.assert_array_equal(decoded, predict.read_rgb(str(colour)))
    np.testing.assert_allclose(decoded[..., 0], ramp / 257.0, atol=1)
    # 32-bit floats have no scale of their own: refused, naming the file.
    floats = tmp_path / "float.tif"
    Image.fromarray(ramp.astype(np.float32)).save(floats)
    with pytest.raises(archives.DataError, match=r"float\.tif: an image of 32-bit floats"):
        predict.read_rgb(str(floats))
    with pytest.raises(archives.DataError, match=r"float\.tif: an image of 32-bit floats"):
        archives.rgb_image(floats.read_bytes(), str(floats))
