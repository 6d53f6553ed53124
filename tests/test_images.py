import io

import pytest
from PIL import Image

from helpers import make_png
from ilearn.errors import InvalidImage
from ilearn.images import load_image


def test_png_is_decoded_and_content_addressed(png):
    image, ref, data = load_image(png)
    assert image.mode == "RGB" and image.size == (64, 64)
    assert ref.format == "PNG" and len(ref.sha256) == 64 and data == png
    assert load_image(png)[1] == ref


def test_transparent_png_is_flattened_on_white():
    image, _, _ = load_image(make_png(mode="RGBA"))
    assert image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("data, message", [(b"", "empty"), (b"not an image at all", "cannot be decoded"),
                                           (make_png()[:40], "cannot be decoded")])
def test_bad_bytes_are_refused(data, message):
    with pytest.raises(InvalidImage, match=message):
        load_image(data)


def test_too_many_bytes_refused(png):
    with pytest.raises(InvalidImage, match="limit"):
        load_image(png, max_bytes=10)


def test_huge_image_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, format="PNG")
    with pytest.raises(InvalidImage, match="pixels"):
        load_image(buf.getvalue(), max_pixels=1_000_000)


def test_unsupported_format_refused():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    with pytest.raises(InvalidImage, match="unsupported image format"):
        load_image(buf.getvalue())


def test_missing_file(tmp_path):
    with pytest.raises(InvalidImage, match="no image file"):
        load_image(tmp_path / "nope.png")
