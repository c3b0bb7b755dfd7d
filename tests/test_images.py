import pytest
from PIL import Image

from mmchat.errors import InputError
from mmchat.media.images import check_image, fit_pixel_budget, open_for_model

MB = 1_000_000


def test_a_real_photo_passes(tmp_path):
    path = tmp_path / "p.jpg"
    Image.new("RGB", (64, 48), "red").save(path)
    assert check_image(path, max_pixels=10_000, max_bytes=MB) == (64, 48)


@pytest.mark.parametrize("content,expected", [
    (b"", "empty"),
    (b"this is not an image at all", "not a photo"),
])
def test_broken_files_get_a_clear_message(tmp_path, content, expected):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        check_image(path, max_pixels=10_000, max_bytes=MB)


def test_a_truncated_jpeg_is_refused(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.effect_noise((256, 256), 50).convert("RGB").save(path, quality=95)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="damaged or incomplete"):
        check_image(path, max_pixels=1_000_000, max_bytes=MB)


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("1", (4000, 3000)).save(path)  # 12 MP, a few KB on disk
    with pytest.raises(InputError, match="4000x3000"):
        check_image(path, max_pixels=1_000_000, max_bytes=MB)


def test_too_large_a_file_is_refused(tmp_path):
    path = tmp_path / "p.png"
    Image.effect_noise((300, 300), 80).save(path)
    with pytest.raises(InputError, match="limit is"):
        check_image(path, max_pixels=10**8, max_bytes=1000)


def test_the_pixel_budget_keeps_the_aspect_ratio():
    image = fit_pixel_budget(Image.new("RGB", (4000, 3000)), 448 * 448)
    width, height = image.size
    assert width * height <= 448 * 448
    assert abs(width / height - 4 / 3) < 0.01


def test_sideways_phone_photos_are_turned_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert open_for_model(path, 10_000).size == (20, 40)


def test_a_big_jpeg_decoded_at_reduced_scale_matches_a_full_decode(tmp_path):
    import numpy as np

    path = tmp_path / "big.jpg"
    gradient = np.linspace(0, 255, 4000, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(gradient, (3000, 1))] * 3, axis=-1)).save(path, quality=90)
    fast = open_for_model(path, 800_000)
    with Image.open(path) as full:
        reference = fit_pixel_budget(full.convert("RGB"), 800_000)
    assert fast.size == reference.size and fast.size[0] * fast.size[1] <= 800_000
    difference = np.abs(np.asarray(fast, dtype=int) - np.asarray(reference, dtype=int)).mean()
    assert difference < 3  # same picture, not a different crop or colour
