"""Pixel-exact regression of `synthetic_streets`: scenes and examples against stored hashes.

The hashes were computed with the renderer as it stood before it was split into modules; any
change to a pixel, a mask value or a random draw changes them. A few scenes' colours differ in
the last bit between CPU instruction sets (IMAGE_SHA256_OTHER_CPUS); masks never do. Scenes cover every domain, every
weather condition, two image sizes and an odd one, and render seeds above 2**32 (the builder's).
"""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from cps_jax.data import synthetic_streets as ss

# sha256 of the image bytes of render_scene(seed, height, width, domain)
IMAGE_SHA256 = {
    (0, 48, 96, "photo"): "bcbe4befc7d3fc648766b373a20c7a8d19aea147bb6ad241568311548a530e41",
    (1, 48, 96, "photo"): "0708afda3036c75dc53ecdc4f3d9f6554f7ac1742325bfbe6f8c69af6e2ff08a",
    (2, 48, 96, "photo"): "e514bffaaee64f58d50ec35618fd59dd9854733eb65bf925b2e93244e7c81d33",
    (3, 48, 96, "photo"): "3a651f152d623223147571baa4b6b35401e34f4dc8e4adfc6e68ddf0251ae16f",
    (4, 48, 96, "photo"): "9bc0f20df4086df81e40d603efb2ebd9355fb5a7eb1c57617f810580c076d22f",
    (5, 48, 96, "photo"): "64596d7958974fd2379a1017f53ef5ce4e707602bc8191b178c24cd22039fdd3",
    (6, 48, 96, "photo"): "fde66100486c7e2df0bc0430982b324b6ecfdf325c56231d6c6bcdbf23cb9b36",
    (7, 48, 96, "photo"): "267125fa8f2339a496372bf141bd2fc0e15031bb03d743ed4e6a68debbbf6daf",
    (8, 48, 96, "photo"): "33a7642f07b0f2bd7d50a82b56c910cceec91dae8a675382a11c1714d5f66c36",
    (18, 48, 96, "photo"): "f7ca10543168d56255863bff2521a1242d2ab9f64cfda6ca574f3f6be6bda054",
    (4294967298, 48, 96, "photo"): (
        "677f11fce7fd70c64c18763b2c5761252ba39a44b096350bb99b9bea6ba2ee4c"
    ),
    (15032385543, 48, 96, "photo"): (
        "57e9afeeef7f1cb7d8f364736b516ddd595d43983de190a8252ed6694f79f5dc"
    ),
    (0, 48, 96, "render"): "b0b6159f8dda9a5a8799a2d423001e7b8d1373af808afbbc99654518a922cf9a",
    (1, 48, 96, "render"): "508096e3acf3d0a85bca8638b62a6389c2a9a00ca870dc7f974405af11aabdff",
    (2, 48, 96, "render"): "65db572f691b0b1a9d084f40c4fa1f7b134c82ad121df966d8a967d0e84e49e4",
    (3, 48, 96, "render"): "33fd24bd1c17d78e782b56bbc2d829aa73f2a0925f87695d97dcec4ca33906f1",
    (4, 48, 96, "render"): "c083cf872633fdca1b76c435015be542d2637a2be4966480d9c9945d1e39f468",
    (5, 48, 96, "render"): "fa4ea13366fe092b110d88f038ac87576c15bbf52ce9456648eb86bf1b8aabf7",
    (6, 48, 96, "render"): "8f15c3ff8a36f22f6a4d33f0f44226f003bdb6f361aca9869c7018663d698118",
    (7, 48, 96, "render"): "a3ba58d56f037287bacf87c49b2326716babf753db7d87d93bc2a2209832e11a",
    (8, 48, 96, "render"): "8eceb9b99eceed7fe36bf60464f577b53a5465362f9c32e946d9d8ce98385eb3",
    (18, 48, 96, "render"): "c099e53b4892d53cb72cef5c9487c0c8de22ac572930efc1ac1cad0fc735f9d2",
    (4294967298, 48, 96, "render"): (
        "e51492878b7e4e3768063c383caf13730efbe577a499d0d07b17fc26d37b3027"
    ),
    (15032385543, 48, 96, "render"): (
        "a3397b0e2b7e68481e0892cd7e4e55f3a8882c83efb0d2c0bcc8c266afbaf9fa"
    ),
    (0, 48, 96, "weather"): "439af74aa1275e2f14b8b48e9fbd2c5f7c052b6227069a699eb435f5bf23a22a",
    (1, 48, 96, "weather"): "b9bda62bca8da7516be19eb13c99602213dec09347e4db077c2f9f2a0cc156c8",
    (2, 48, 96, "weather"): "568409fbb510c0587ea25b9b9c3952a95eee31b59a44ad687c81570f6cb3200b",
    (3, 48, 96, "weather"): "cbfe3cdc17002a1012a6947bda3f77d8294c023b18d743edfff41f68fe8d064e",
    (4, 48, 96, "weather"): "a46fa2b44d000dcf9f3a293919c79c6e21923024eb9daf71fbaac763990adbd3",
    (5, 48, 96, "weather"): "29d6dac5176ad135f593d472eefde79d57721eccca3ce7c18bb5971cc76ccf4d",
    (6, 48, 96, "weather"): "fde66100486c7e2df0bc0430982b324b6ecfdf325c56231d6c6bcdbf23cb9b36",
    (7, 48, 96, "weather"): "89454b15cb3e75e5ea7fed2559986f2eed6e69b3e2f8350444d2947509ce50d0",
    (8, 48, 96, "weather"): "d036a5f94b81ccf844da998cce60717a7f1cc351a79312253b00f4cfe3214a21",
    (18, 48, 96, "weather"): "68ff1ff7bbc7fa48f209fac4a599cf10c66bc1921bd6ae40bd5a4870fb2c1f99",
    (4294967298, 48, 96, "weather"): (
        "677f11fce7fd70c64c18763b2c5761252ba39a44b096350bb99b9bea6ba2ee4c"
    ),
    (15032385543, 48, 96, "weather"): (
        "d93e812b45afec26de79630af1c3575a4a78298b738e73b626a95f650bb5520c"
    ),
    (0, 96, 192, "photo"): "7d468afc8d50934cb680871a53212db5e06731c51f28812c6511bcb9a3906246",
    (1, 96, 192, "photo"): "4a6712876b7daae763db106b8ced6215c678f41fec362c2770dd88377fb667e2",
    (2, 96, 192, "photo"): "42a759bdc4b8c90e8d1e0d24f72aeb62642a2707ffc673fa6bb14c11bef0c304",
    (3, 96, 192, "photo"): "0d3a5fd4d18976d1509177c4f918d133293d404ff362143a30618782918d53bf",
    (4, 96, 192, "photo"): "4883e71950e4e299df8be766b06af5454b63592ec7d0db8f00caf43b3e7873d1",
    (5, 96, 192, "photo"): "155def128b4e1a1ac697091c3569fd2ad097f4bb8a5861c860276fa3b423c843",
    (6, 96, 192, "photo"): "4904d141e3f587a99a63d53ce3b03e6ab0f45746fb3f4c9b2048d9bb28b40864",
    (7, 96, 192, "photo"): "814d91301e2273d4bcfbacb55cee923d2b3d354b1bb2ed8a2a703e057cff9a64",
    (8, 96, 192, "photo"): "f2488f322562a02f9495e55296888c85539ae28494e312ac8437ae03551b08dd",
    (18, 96, 192, "photo"): "87acd1751992fc8315c4858ba30ee52edd63b252fe0f64695d05dffc66997153",
    (4294967298, 96, 192, "photo"): (
        "2b0076d7b3fb86937abb034d49a8c9c8033d6f54d1bd5b168993420b99c9ebb9"
    ),
    (15032385543, 96, 192, "photo"): (
        "584864a5d514a8313cfc8830e6efd0f31e094cc20c3bb16747ba814d1a40a372"
    ),
    (0, 96, 192, "render"): "22dee4d3e8da377e07cf549609425e69424a7415e5ce3afab125d5fbdbbc11da",
    (1, 96, 192, "render"): "590f90608e94d8528c45b4f75238c1cbaac5fc5927e0a2b6a7cb05a68162925f",
    (2, 96, 192, "render"): "18bba496958b643d39e975ba009b7bc791f56c1fadf150bc433daad8d354f293",
    (3, 96, 192, "render"): "7bef8dce8c54ad2b1c8bf15e6e2088a2f8a3491535ccf38c560d68ff00c527d7",
    (4, 96, 192, "render"): "c799d6e373c79a59e90c49064e4cdd192d35cf6fc187743c75629bc527be3d78",
    (5, 96, 192, "render"): "a3fc4c680343a2cb143f326d06db6f3b0b94d166047f5c6a15115e098f1f20dd",
    (6, 96, 192, "render"): "f67c64d3e94a00bca33f73cb1a8ca90bfbfbcfb5d70a24a5f4eddd4da4e279cb",
    (7, 96, 192, "render"): "c7f18983b8558a7c33afe9c79e98bcfbe975650044713b4b6f916018247ac7c5",
    (8, 96, 192, "render"): "a628688e69ec951a5ee5ef19db0e8a4e8bee24220b7eaecde956557185bbdbdd",
    (18, 96, 192, "render"): "bf142fa9a5461108cfff97f7b6ca516ad06694b7226e6e81915e116fc9451aa1",
    (4294967298, 96, 192, "render"): (
        "402d66e1f1c038ecd16e3ea7a1f6fb6d79107a0d99afcd83b17b3794005b8ef8"
    ),
    (15032385543, 96, 192, "render"): (
        "573f41f8086587c9bc7b73774b121e02c5da2ac2a739be234e834d787f9761ee"
    ),
    (0, 96, 192, "weather"): "14346df971bd989baccffafa99a0d594e3dea4a9ba30c00447af321ab59d2604",
    (1, 96, 192, "weather"): "880fb6365ae38553cc6b4324189d833fbf34d4b5f4e0b18e2fed4d0b6d7b6d8b",
    (2, 96, 192, "weather"): "304055f46cef70b7a7dd31b01b2fd0db6925aaac2ff92d3e57b3a0fff69f5899",
    (3, 96, 192, "weather"): "dc10e86a981d8f50dd288b69b4ee6708b5ff0380d592066703e90c4b2c3f3243",
    (4, 96, 192, "weather"): "49b472fb0690ebcd5f40cdc9aba446ca9eaf7a122db2477a2455991982e5d6da",
    (5, 96, 192, "weather"): "ebe458a23c3d65a13cb19d88fc9c7903c267e94256410e4904254b3533e8ccd9",
    (6, 96, 192, "weather"): "4904d141e3f587a99a63d53ce3b03e6ab0f45746fb3f4c9b2048d9bb28b40864",
    (7, 96, 192, "weather"): "b5ab52b175551af547c7814ee970e49c5f36123818466e1053f376bb5fd3f4e7",
    (8, 96, 192, "weather"): "4f43beb3c3d23348e1f162f962cc9068c583763adc3b55baea6f078f80bd83d2",
    (18, 96, 192, "weather"): "533ecb84a53115c73655d5bfb1663e6efa0ba27efd76f89f51d8dd199e725791",
    (4294967298, 96, 192, "weather"): (
        "2b0076d7b3fb86937abb034d49a8c9c8033d6f54d1bd5b168993420b99c9ebb9"
    ),
    (15032385543, 96, 192, "weather"): (
        "3f1295b79bd907db6d35f252a4c38078b1fb2e2009afab7311e439eae3f4d618"
    ),
    (3, 37, 131, "photo"): "0e95657554de6cd13b52a1b2b61209b649b0f37a1cfe9112f13c8e960b983f85",
    (18, 37, 131, "photo"): "4d0f52d3afe3c38ab07b828ad857c51f31d45aa9475d5c5b71c111de73b72648",
    (3, 37, 131, "render"): "481f0fc8a73fda6327c8b2480e09146c0ce15f69972031e1ee829170fc0f7dc8",
    (18, 37, 131, "render"): "983357d18cfbc322a54c7dd2d52e147c2178f3f06c1b1892edd15cd1e7cb3534",
    (3, 37, 131, "weather"): "0c354b3f7e70143da317d9afff6b9302ac1767bc50b35e13dd4996713a0c8e19",
    (18, 37, 131, "weather"): "95b11a87a45f7bd06cc1bf496bbf5946f16c3a7515bd00ba5c859c798eaf055d",
}
# sha256 of the mask bytes of render_scene(seed, height, width, *): one mask for every domain
MASK_SHA256 = {
    (0, 48, 96): "d681a849c12445ca661da481d5169e535f029d0cec612f8cb419fa712e915804",
    (1, 48, 96): "3c4877ab28b2154169a4d20ebd676fb70b101ee81f7c1e3cad8bd04ceb8be35d",
    (2, 48, 96): "9223b35657123e68f257a9fdba7942c513821ff22d8303edefa72bb40428d099",
    (3, 48, 96): "8f3c58a6e5cc679f7ba3de03153a524d3b2db588967eff50eece8f1a32dd993a",
    (4, 48, 96): "ae6ce8cba395dead709d7fbc728d107aabbbb61d87e703c4e4f512e101629e37",
    (5, 48, 96): "f81e32d2a6345662ad29cc5f5aa88a699e4959ddcc457adce0cc171ee8472234",
    (6, 48, 96): "8a90da9a0095fe1bca63ff29c713dea02929c108132b3afa485c56ff8109b3b4",
    (7, 48, 96): "8af27e436d81f22ce98bdb25da04d81b02d796b9ea1018b78bcd2491389bfbea",
    (8, 48, 96): "91352ca016785f133d0c0cb13499309350518f8195286dcbd923f93934405a09",
    (18, 48, 96): "16c91bd3768d089218edeaf1dfd4eb365e7f2249a530868413c7845416150585",
    (4294967298, 48, 96): "91557b80e19a737f44e7dd38e887c8a11235a5018292f0c1fa358a4ae1a13df8",
    (15032385543, 48, 96): "c7c5b25ace1b12e185cf13ba7720aa0dbea3a489ef1d30a38c419721dd08bba4",
    (0, 96, 192): "98cdb4a65556589195f9c12bcc67f6b2d69951a4c228ae295ece001113b2694b",
    (1, 96, 192): "c8a5b864f8c347c6dd756850a808b774ab0a07ed99b961f7f6fe536192e43b5e",
    (2, 96, 192): "88e39a39e6a5df554d118721780142e6a5065aaed9ef36e28e9332d4fd0d2687",
    (3, 96, 192): "e65f1a4eed95b3029fd90989d3ec26ff18c6cc086b01f7e6da964a6b8b9e7caf",
    (4, 96, 192): "fbd60392a1898a4601f3f581328b0dc7e64163013cdca58e4f447b6018dc3f20",
    (5, 96, 192): "e7b4a47e1e211311e632582be87f2479e1cf3bcaf2f15e08ba4cd921e3702f68",
    (6, 96, 192): "fdf3510f751a84aa241583773842ecf8cf5044a251df997a311fcf0056662e37",
    (7, 96, 192): "24513d7af548f5d048782f811a6cd26ea1691e36887c0f4ac33813fb0176bb41",
    (8, 96, 192): "3db7d6155180b3df88e8d14063d41f8e1ed3f41b4936ddd0807c7115210fa181",
    (18, 96, 192): "76d4d7e0aff0fb90be76009df9e397bda714fef0771925055561fde4abff2c06",
    (4294967298, 96, 192): "6b1380138ff55635eb6b1420f668c8e31978469f49a93269e0bcc20a755c34bf",
    (15032385543, 96, 192): "a3c3070668c55f14a5ccc7549b0787bd8be6caec484e1dbe164b666f975f4196",
    (3, 37, 131): "7eb289b8f9cf98987434ac263d0c4a99e393f12b0494ba134836b094a6e70493",
    (18, 37, 131): "e6e4b448e5c28db88722174a98cc053fce23acf6af3e30b72dcf875eaedfe80c",
}
# the weather-domain condition of each seed above
CONDITION = {
    0: "night",
    1: "fog",
    2: "fog",
    3: "rain",
    4: "dusk",
    5: "rain",
    6: "clear",
    7: "rain",
    8: "dusk",
    18: "overcast",
    4294967298: "clear",
    15032385543: "dusk",
}
# _make_example(job) -> (key, multi-hot classes, sha256 of decoded image, of decoded mask)
EXAMPLES = {
    ("train", 0, 0, 48, 96, "photo"): (
        "train_000000",
        [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
        "bcbe4befc7d3fc648766b373a20c7a8d19aea147bb6ad241568311548a530e41",
        "d681a849c12445ca661da481d5169e535f029d0cec612f8cb419fa712e915804",
    ),
    ("validation", 3, 2, 48, 96, "weather"): (
        "validation_000003",
        [1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1],
        "12a81758a8e2b8a2a419069132c18c4f4f023dcf539e7e95076c5da071317ee2",
        "f17fab0def7be6ba55dfddaa0b4258df76308656c5abb08fcd33362ba19ec2af",
    ),
    ("train", 7, 1, 40, 72, "render"): (
        "train_000007",
        [1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1],
        "b772230b930d060851760f0f9f5e7b13cd975c089fb73d452bf226d79393b321",
        "e8b90fc5c29212f6c39aa82415c14d3ab10903f08bc5f2ee73c91c559fa0d02e",
    ),
}


# numpy's vectorised maths (exp, sin, power in float32) differs in the last bit between the
# instruction sets it dispatches to, which moves a few colour values of a few scenes; the masks
# and every random draw are the same everywhere. The hashes above are those of an AVX-512 CPU
# (numpy's X86_V4); these are the scenes that differ where numpy finds only X86_V3 (AVX2) or
# X86_V2 (e.g. NPY_DISABLE_CPU_FEATURES=X86_V3).
IMAGE_SHA256_OTHER_CPUS = {
    "X86_V3": {
        (1, 96, 192, 'photo'): "05878a47852bfb2338871271482bfc1ad91e7f24642626966bbfa6f84bd4cb5e",
        (18, 96, 192, 'weather'): "7a06224860d4af74171bd3564538c3a66f1e951f0723e54482281d0328ea5143",
        (6, 96, 192, 'photo'): "2f3c259678e88f6c1cbe13160206f346df2fc9f3dfc94cd9cc1af4006df46715",
        (6, 96, 192, 'weather'): "2f3c259678e88f6c1cbe13160206f346df2fc9f3dfc94cd9cc1af4006df46715",
    },
    "X86_V2": {
        (1, 96, 192, 'photo'): "5b66e2d14743a5a6c53c0ad1050a06123966668af4584aed5111216765602e23",
        (15032385543, 96, 192, 'photo'): "41b4af4a20ae1ccefe6ffc7aedd37c791322def7ac06e061a05eb2c9ab27f85d",
        (18, 96, 192, 'weather'): "7a06224860d4af74171bd3564538c3a66f1e951f0723e54482281d0328ea5143",
        (3, 96, 192, 'photo'): "fa26e42aab12a502341fe413e2007d7c7c000cf39a7ee69a1666be99e20e2396",
        (4294967298, 48, 96, 'photo'): "3208b9bc9498a563bf2c8655155cc1b3198c191e440149d4c87a9c3ad3905990",
        (4294967298, 48, 96, 'weather'): "3208b9bc9498a563bf2c8655155cc1b3198c191e440149d4c87a9c3ad3905990",
        (4294967298, 96, 192, 'photo'): "7b1cc72fad784f3192ad9efcc6bcc7747b893ef3d877998b254f51f3c88053c8",
        (4294967298, 96, 192, 'weather'): "7b1cc72fad784f3192ad9efcc6bcc7747b893ef3d877998b254f51f3c88053c8",
        (5, 96, 192, 'photo'): "6fccf1a52dadb364a2eee32c80f3279f382dd305103286d8aba1df1044ff20c1",
        (5, 96, 192, 'weather'): "3675fc0845b767b5b01539016b176e85894699bcc2f92c3adee5e8a2c8f2220e",
        (6, 96, 192, 'photo'): "7a1d91e0443484f08811f32a44b031464164c5000ca0af35a0a10bbfc3b29f39",
        (6, 96, 192, 'weather'): "7a1d91e0443484f08811f32a44b031464164c5000ca0af35a0a10bbfc3b29f39",
    },
}


def _sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("key", sorted(IMAGE_SHA256, key=str), ids=str)
def test_scene_pixels_are_unchanged(key):
    seed, height, width, domain = key
    image, mask = ss.render_scene(seed, height, width, domain)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert mask.shape == (height, width) and mask.dtype == np.uint8
    assert _sha256(mask) == MASK_SHA256[seed, height, width]
    known = {IMAGE_SHA256[key]} | {other[key] for other in IMAGE_SHA256_OTHER_CPUS.values() if key in other}
    assert _sha256(image) in known


def test_hashed_scenes_cover_every_domain_and_condition():
    assert {domain for *_, domain in IMAGE_SHA256} == set(ss.DOMAINS)
    assert set(CONDITION.values()) == set(ss.CONDITIONS)
    assert {seed: ss.scene_condition(seed) for seed in CONDITION} == CONDITION


def _decode_png(data):
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("job", sorted(EXAMPLES), ids=str)
def test_builder_examples_are_unchanged(job):
    key, classes, image_sha, mask_sha = EXAMPLES[job]
    got_key, ex = ss._make_example(job)
    assert got_key == ex["id"] == key
    assert ex["classes"].dtype == np.uint8 and ex["classes"].tolist() == classes
    assert _sha256(_decode_png(ex["image"])) == image_sha
    assert _sha256(_decode_png(ex["mask"])) == mask_sha


def test_builder_identity_is_unchanged(tmp_path):
    """Name, version, default config and features: what a prepared directory is found by."""
    assert str(ss.SyntheticStreets.VERSION) == "1.0.0"
    assert ss.SyntheticStreets.DEFAULT_CONFIG_NAME == "photo_96x192_train1000_val200_seed0"
    b = ss.builder(str(tmp_path), height=48, width=96, num_train=3, num_validation=2, seed=1)
    assert b.name == "synthetic_streets"
    assert b.builder_config.name == "photo_48x96_train3_val2_seed1"
    assert b.builder_config.description == "48x96 photo scenes, 3 train / 2 validation, seed 1"
    info = b.info
    assert info.description == (
        "`synthetic_streets`: procedurally generated street scenes for semi-supervised "
        "segmentation."
    )
    assert info.supervised_keys == ("image", "mask")
    features = info.features
    assert sorted(features.keys()) == ["classes", "id", "image", "mask"]
    assert features["image"].shape == (None, None, 3)
    assert features["mask"].shape == (None, None, 1)
    assert features["classes"].shape == (ss.NUM_CLASSES,)
    assert features["classes"].np_dtype == np.uint8
