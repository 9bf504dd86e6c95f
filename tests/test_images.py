"""Decoding untrusted bytes, RGB on white, safe unique file names, atomic writes."""

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from local_http import bomb_png, make_png
from pokemon_diffusion.collection import images
from pokemon_diffusion.collection.images import (ImageRejected, NameAllocator, decode_image, inside,
                                           is_valid_png, pad_to_square, prepare_image,
                                           remove_stale_temp_files, safe_stem, save_png_atomic, to_rgb)
from pokemon_diffusion.errors import DataError


def _encode(image, fmt="PNG", **kwargs):
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


# --- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, dex, form, expected", [
    ("Charmander", 4, None, "0004_charmander"),
    ("Nidoran♀", 29, None, "0029_nidoran_f"),
    ("Nidoran♂", 32, None, "0032_nidoran_m"),
    ("Farfetch'd", 83, None, "0083_farfetchd"),
    ("Mr. Mime", 122, None, "0122_mr_mime"),
    ("Type: Null", 772, None, "0772_type_null"),
    ("Flabébé", 669, None, "0669_flabebe"),
    ("Ho-Oh", 250, None, "0250_ho_oh"),
    ("Rattata", 19, "Alolan Form", "0019_rattata_alolan"),
    ("Rotom", 479, "Heat Rotom", "0479_rotom_heat_rotom"),
    ("Sprigatito", None, None, "sprigatito"),
])
def test_safe_stem_of_real_names(name, dex, form, expected):
    assert safe_stem(name, dex, form) == expected


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "..\\..\\windows\\system32",
                                     "a/b\\c\x00d", "\x00", "..", ".", "", "   ", "CON", "nul",
                                     "x" * 500, "名前", "\u202eevil"])
def test_hostile_names_stay_portable_and_inside(tmp_path, hostile):
    stem = safe_stem(hostile)
    assert stem and len(stem) <= images.MAX_STEM_LENGTH
    assert set(stem) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    assert stem.lower() not in ("con", "nul", "prn", "aux")
    path = inside(tmp_path, stem + ".png")
    assert path.parent == tmp_path.resolve()


def test_two_forms_and_name_clashes_get_unique_names():
    allocator = NameAllocator()
    names = [allocator.claim(safe_stem(n, d, f)) for n, d, f in [
        ("Wormadam", 413, "Plant Cloak"), ("Wormadam", 413, "Sandy Cloak"), ("Twin", 1, None),
        ("Twin", 1, None), ("TWIN", 1, None), ("Nidoran♀", 29, None), ("Nidoran♂", 29, None)]]
    assert names == ["0413_wormadam_plant_cloak.png", "0413_wormadam_sandy_cloak.png", "0001_twin.png",
                     "0001_twin_2.png", "0001_twin_3.png", "0029_nidoran_f.png", "0029_nidoran_m.png"]


def test_same_sequence_gives_same_names():
    stems = ["a", "a", "b", "a"]
    first, second = NameAllocator(), NameAllocator()
    assert [first.claim(s) for s in stems] == [second.claim(s) for s in stems]


def test_inside_refuses_escapes(tmp_path):
    for escape in ("../x.png", "/etc/passwd", "a/../../x.png"):
        with pytest.raises(DataError, match="leaves the dataset folder"):
            inside(tmp_path, escape)


# --- decoding ---------------------------------------------------------------------------------

def test_garbage_is_rejected():
    with pytest.raises(ImageRejected, match="not an image"):
        decode_image(b"<html>Just a moment...</html>")
    with pytest.raises(ImageRejected, match="empty"):
        decode_image(b"")


def test_truncated_png_is_rejected():
    data = make_png(32, 32, "t")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_beyond_pils_hard_limit_is_rejected():
    with pytest.raises(ImageRejected, match="decompression bomb"):
        decode_image(bomb_png(30_000, 30_000))  # 900 M pixels: PIL itself refuses


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(ImageRejected, match=r"decompression bomb: 100x100 = 10,000 pixels; allowed: at most 5,000"):
        decode_image(bomb_png(100, 100), max_pixels=5_000)


def test_unlisted_formats_are_refused():
    data = _encode(Image.new("RGB", (16, 16)), "ICO", sizes=[(16, 16)])  # an explicit size: Pillow 12 drops sizes above the image
    with pytest.raises(ImageRejected, match="format ICO is not allowed"):
        decode_image(data)


# --- conversion -------------------------------------------------------------------------------

def test_transparent_rgba_goes_onto_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((1, 1), (10, 20, 30, 255))
    image.putpixel((2, 2), (0, 0, 0, 128))  # half-transparent black -> mid grey
    rgb = np.asarray(to_rgb(image))
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 4, 3)
    assert (rgb[0, 0] == 255).all() and tuple(rgb[1, 1]) == (10, 20, 30)
    assert 120 <= rgb[2, 2, 0] <= 135


@pytest.mark.parametrize("mode", ["LA", "P", "L", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(mode):
    image = Image.new("RGBA", (6, 6), (0, 0, 0, 0)).convert(mode) if mode in ("LA", "P") else Image.new(mode, (6, 6))
    if mode == "P":
        image.info["transparency"] = 0
    assert to_rgb(image).mode == "RGB"


def test_palette_transparency_goes_onto_white():
    image = Image.new("P", (3, 3), 0)
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    rgb = np.asarray(to_rgb(image))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (200, 0, 0)


def test_16_bit_grey_is_scaled_not_clipped():
    image = Image.fromarray(np.full((2, 2), 32768, dtype=np.uint16))
    value = np.asarray(to_rgb(image))[0, 0, 0]
    assert 120 <= value <= 135


def test_pad_to_square_centres_on_white():
    image = Image.new("RGB", (8, 4), (0, 0, 0))
    square = np.asarray(pad_to_square(image))
    assert square.shape == (8, 8, 3)
    assert (square[0] == 255).all() and (square[-1] == 255).all() and (square[2:6] == 0).all()


def test_prepare_image_end_to_end():
    image = prepare_image(make_png(12, 9, "x"))
    assert image.mode == "RGB" and image.size == (12, 12)
    assert image.getpixel((0, 0)) == (255, 255, 255)


# --- files ------------------------------------------------------------------------------------

def test_save_is_atomic_and_valid(tmp_path):
    path = save_png_atomic(Image.new("RGB", (8, 8), (1, 2, 3)), tmp_path / "sub" / "a.png")
    assert is_valid_png(path) and os.listdir(path.parent) == ["a.png"]


def test_failed_save_leaves_nothing(tmp_path):
    class Exploding:
        def save(self, fh, format):
            fh.write(b"\x89PNG partial")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_png_atomic(Exploding(), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_is_valid_png_refuses_partial_and_non_rgb(tmp_path):
    good = save_png_atomic(Image.new("RGB", (8, 8)), tmp_path / "good.png")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-20])
    Image.new("RGBA", (8, 8)).save(tmp_path / "rgba.png")
    (tmp_path / "text.png").write_text("hello")
    assert is_valid_png(good)
    assert not any(is_valid_png(tmp_path / n) for n in ("cut.png", "rgba.png", "text.png", "absent.png"))


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".0001_a.png.abc.tmp").write_bytes(b"x")
    (tmp_path / "0001_a.png").write_bytes(b"x")
    assert remove_stale_temp_files(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["0001_a.png"]
    assert remove_stale_temp_files(Path(tmp_path / "absent")) == 0
