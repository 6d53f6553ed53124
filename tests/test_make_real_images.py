"""scripts/make_real_images.py on a fake icon-theme tree and a fake clip-art folder (no packages needed)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ilearn.evaluation.scenarios.objects import ObjectsScenario

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_real_images.py"


@pytest.fixture(scope="module")
def mri():
    spec = importlib.util.spec_from_file_location("make_real_images", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def drawing(shape: str, colour: tuple[int, int, int], side: int = 64, scale: float = 1.0) -> Image.Image:
    """A shape in `colour` on a transparent square; `scale` < 1 leaves it small in the middle of the canvas."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    pad = round(side * (1 - scale) / 2) + round(side * scale / 8)
    box = (pad, pad, side - pad - 1, side - pad - 1)
    draw = ImageDraw.Draw(image)
    if shape == "square":
        draw.rectangle(box, fill=colour + (255,))
    elif shape == "circle":
        draw.ellipse(box, fill=colour + (255,))
    elif shape == "triangle":
        draw.polygon([(box[0], box[3]), (side // 2, box[1]), (box[2], box[3])], fill=colour + (255,))
    elif shape == "bar":
        draw.rectangle((box[0], side // 2 - side // 10, box[2], side // 2 + side // 10), fill=colour + (255,))
    elif shape == "cross":
        draw.line((box[0], box[1], box[2], box[3]), fill=colour + (255,), width=max(2, side // 10))
        draw.line((box[0], box[3], box[2], box[1]), fill=colour + (255,), width=max(2, side // 10))
    return image


def put(root: Path, relative: str, image: Image.Image) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture
def icon_tree(tmp_path, mri):
    """Six themes in five families. "printer" is drawn by six themes, one a copy of another and one white on
    white, and in a folder of Alpha's that holds another family's drawings; "battery" by two families only."""
    root = tmp_path / "icons"
    put(root, "Alpha/256x256/devices/printer.png", drawing("square", (200, 30, 30), 256))
    put(root, "Alpha/16x16/devices/printer.png", drawing("circle", (0, 0, 0), 16))  # less detailed: not picked
    put(root, "Alpha/scalable/devices/printer-symbolic.png", drawing("cross", (0, 0, 0)))  # symbolic: ignored
    put(root, "Alpha/512x512/legacy/printer.png", drawing("cross", (0, 0, 90), 512))  # another family's: skipped
    put(root, "Beta/devices/48@2x/printer.png", drawing("circle", (30, 30, 200), 96))
    put(root, "Gamma/places/64/printer.png", drawing("triangle", (30, 160, 30)))
    put(root, "Delta/64x64/devices/printer.png", drawing("square", (200, 30, 30)))  # Alpha's drawing again
    put(root, "Ghost/64x64/devices/printer.png", drawing("square", (255, 255, 255)))  # white on white
    put(root, "GammaDerived/64/devices/printer.png", drawing("bar", (0, 0, 0)))  # Gamma already drew one
    put(root, "GammaDerived/64/devices/battery.png", drawing("bar", (120, 120, 0)))  # Gamma did not
    put(root, "Alpha/48x48/devices/battery.png", drawing("circle", (120, 120, 0), 48))
    families = (
        mri.Family("alpha", (("alpha-icon-theme", "Alpha"),), "public domain", skip=("legacy",)),
        mri.Family("beta", (("beta-icon-theme", "Beta"),), "GPL-3"),
        mri.Family("gamma", (("gamma-icon-theme", "Gamma"), ("gamma-derived-theme", "GammaDerived")), "GPL-3"),
        mri.Family("delta", (("delta-icon-theme", "Delta"),), "GPL-3"),
        mri.Family("ghost", (("ghost-icon-theme", "Ghost"),), "GPL-3"),
    )
    icon_sets = {"views": {"printer": mri.IconObject(("printer",), "printing documents"),
                           "battery": mri.IconObject(("battery",), "storing power")}}
    return root, families, icon_sets


def build_icons(mri, out, icon_tree, min_pictures=3):
    root, families, icon_sets = icon_tree
    return mri.build(out, ["views"], size=32, min_pictures=min_pictures, icon_root=root, families=families,
                     icon_sets=icon_sets)


def test_icon_detail_and_pick(mri):
    assert mri.icon_detail(Path("48x48/devices/printer.png")) == 48
    assert mri.icon_detail(Path("devices/48@2x/printer.svg")) == 96
    assert mri.icon_detail(Path("32x32@2x/devices/printer.png")) == 64
    assert mri.icon_detail(Path("devices/scalable/printer.svg")) == 512
    assert mri.icon_detail(Path("apps/printer.png")) == 0
    assert mri.pick_icon([(48, False, "t/48/a.png"), (96, False, "t/48@2x/a.png"), (48, True, "t/48/a.svg")]) \
        == "t/48@2x/a.png"
    assert mri.pick_icon([(64, False, "t/64/a.png"), (64, True, "t/64/a.svg")]) == "t/64/a.svg"


def test_icon_set_one_picture_per_family_without_copies_or_blanks(mri, tmp_path, icon_tree):
    manifests = build_icons(mri, tmp_path / "real", icon_tree)
    folder = tmp_path / "real" / "views"
    # printer: alpha, beta, gamma (its own theme, not the derived one); delta copies alpha, ghost is blank
    assert sorted(p.name for p in (folder / "printer").iterdir()) == [
        "00_alpha.png", "01_beta.png", "02_gamma.png", "facts.json"]
    # battery: only two families draw it (< 3 pictures), so it is left out
    assert not (folder / "battery").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == manifests["views"]
    assert manifest["objects"] == ["printer"] and manifest["left_out"] == {"battery": 2}
    rows = {r["picture"]: r for r in manifest["rows"]}
    assert rows["printer/00_alpha.png"]["file"] == str(icon_tree[0] / "Alpha/256x256/devices/printer.png")
    assert rows["printer/02_gamma.png"]["package"] == "gamma-icon-theme"
    assert {r["licence"] for r in rows.values()} == {"public domain", "GPL-3"}
    assert json.loads((folder / "printer" / "facts.json").read_text()) == {
        "name": "printer", "use": "printing documents"}
    summary = json.loads((tmp_path / "real" / "manifest.json").read_text())
    assert summary["views"]["pictures"] == 3
    (tmp_path / "real" / "manifest.json").write_text(json.dumps({"other": {"pictures": 5}}))
    build_icons(mri, tmp_path / "real", icon_tree)  # building one set keeps the others' entries
    assert json.loads((tmp_path / "real" / "manifest.json").read_text()) == {"other": {"pictures": 5}, **summary}


def test_pictures_are_fixed_size_flattened_on_white(mri, tmp_path, icon_tree):
    build_icons(mri, tmp_path / "real", icon_tree)
    for path in (tmp_path / "real" / "views" / "printer").glob("*.png"):
        image = Image.open(path)
        assert image.size == (32, 32) and image.mode == "RGB"
        assert image.getpixel((0, 0)) == (255, 255, 255)  # the transparent corner, composited on white
    red = Image.open(tmp_path / "real" / "views" / "printer" / "00_alpha.png")
    assert red.getpixel((16, 16)) == (200, 30, 30)


def test_build_is_deterministic_and_replaces_an_old_set(mri, tmp_path, icon_tree):
    def digest(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    build_icons(mri, tmp_path / "a", icon_tree)
    (tmp_path / "a" / "views" / "stale").mkdir()  # left from an earlier build: removed by the next one
    build_icons(mri, tmp_path / "a", icon_tree)
    build_icons(mri, tmp_path / "b", icon_tree)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_objects_scenario_reads_the_set(mri, tmp_path, icon_tree):
    build_icons(mri, tmp_path / "real", icon_tree, min_pictures=2)
    scenario = ObjectsScenario.from_folder(tmp_path / "real" / "views", seed=0)
    assert [(i.name, i.facts["use"], len(i.teach_views) + len(i.test_views)) for i in scenario.items] == [
        ("battery", "storing power", 2), ("printer", "printing documents", 3)]
    assert all(len(i.test_views) == 1 for i in scenario.items)


def test_kinds_set_from_clip_art_crops_small_drawings(mri, tmp_path):
    clipart = tmp_path / "clipart"
    put(clipart, "food/apple_one.png", drawing("circle", (200, 0, 0), 400, scale=0.2))  # small on a big canvas
    put(clipart, "food/apple_two.png", drawing("square", (0, 150, 0), 64))
    put(clipart, "food/not_an_apple.png", drawing("triangle", (0, 0, 0)))  # not listed: not used
    kinds = {"apple": mri.Kind("1F34E", "eating", ("food/apple_one.png", "food/apple_two.png", "food/missing.png"))}
    manifests = mri.build(tmp_path / "real", ["kinds"], size=32, min_pictures=2, clipart_root=clipart,
                          kinds=kinds, emoji_styles=())
    rows = manifests["kinds"]["rows"]
    assert [(r["picture"], r["package"], r["theme"]) for r in rows] == [
        ("apple/00_apple-one.png", "openclipart-png", "apple_one"),
        ("apple/01_apple-two.png", "openclipart-png", "apple_two")]
    small = Image.open(tmp_path / "real" / "kinds" / "apple" / "00_apple-one.png")
    box = mri.ink_box(small)
    assert box[2] - box[0] >= 26  # the circle fills the square but for the margin


def test_unknown_set_is_refused(mri, tmp_path):
    with pytest.raises(SystemExit, match="unknown set"):
        mri.build(tmp_path / "real", ["nope"], icon_sets={}, kinds={})


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert (librsvg2-bin)")
def test_svg_icons_are_rasterised(mri, tmp_path):
    svg = tmp_path / "Vec" / "scalable" / "devices" / "printer.svg"
    svg.parent.mkdir(parents=True)
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16">'
                   '<rect x="2" y="2" width="12" height="12" fill="#0000ff"/></svg>')
    image = mri.flatten(mri.load_picture(svg, 64), 32)
    assert image.size == (32, 32) and image.getpixel((16, 16)) == (0, 0, 255)


def make_rcc(path: Path, files: dict[str, bytes], compressed: tuple[str, ...] = ()) -> None:
    """A compiled Qt resource file (format 3) holding `files` (path -> bytes; names in `compressed` zlib'd)."""
    root: dict = {}
    for name, blob in files.items():
        folder = root
        parts = name.strip("/").split("/")
        for part in parts[:-1]:
            folder = folder.setdefault(part, {})
        folder[parts[-1]] = blob
    names, data, nodes = bytearray(), bytearray(), [b""]

    def add_name(text: str) -> int:
        names.extend(struct.pack(">HI", len(text), 0) + text.encode("utf-16-be"))
        return len(names) - 6 - 2 * len(text)

    queue = [(0, "", root)]
    while queue:
        index, name, folder = queue.pop(0)
        first, children = len(nodes), sorted(folder.items())
        nodes += [b""] * len(children)
        nodes[index] = struct.pack(">IHII", add_name(name) if index else 0, 2, len(children), first) + bytes(8)
        for i, (child, value) in enumerate(children):
            if isinstance(value, dict):
                queue.append((first + i, child, value))
                continue
            flags = 1 if child in compressed else 0
            payload = struct.pack(">I", len(value)) + zlib.compress(value) if flags else value
            nodes[first + i] = struct.pack(">IHHHI", add_name(child), flags, 0, 0, len(data)) + bytes(8)
            data.extend(struct.pack(">I", len(payload)) + payload)
    tree = b"".join(nodes)
    path.write_bytes(b"qres" + struct.pack(">IIIII", 3, 24, 24 + len(tree), 24 + len(tree) + len(data), 0)
                     + tree + bytes(data) + bytes(names))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_read_qt_resources(mri, tmp_path):
    files = {"/a/b/one.txt": b"plain", "/a/two.txt": b"squeezed" * 50, "/c.txt": b""}
    make_rcc(tmp_path / "x.rcc", files, compressed=("two.txt",))
    assert mri.read_qt_resources(tmp_path / "x.rcc") == files
    (tmp_path / "bad.rcc").write_bytes(b"not a resource file")
    with pytest.raises(ValueError, match="not a Qt resource file"):
        mri.read_qt_resources(tmp_path / "bad.rcc")


def test_details_set_from_gcompris_photos(mri, tmp_path):
    """The whole photo, its details in numeric order, then another photo; licences from the READMEs; a photo
    is fitted whole (not cropped to its 'drawing')."""
    half = Image.new("RGB", (40, 20), (255, 255, 255))
    half.paste((200, 0, 0), (20, 0, 40, 20))  # white left half, red right half
    details = "/gcompris/src/activities/details/resource/image/"
    readme = ("Copyright: 2008 Someone\nLicense: CC-BY-SA 4.0\nFiles:\nCastle_background.webp\nCastle_0.webp\n"
              "Castle_1.webp\nCastle_10.webp\nComment: based on a photo by A. Photographer\n")
    make_rcc(tmp_path / "details.rcc", {
        details + "README": readme.encode(), details + "Castle_background.webp": png_bytes(half),
        details + "Castle_10.webp": png_bytes(drawing("circle", (0, 0, 200))),
        details + "Castle_1.webp": png_bytes(drawing("square", (0, 150, 0))),
        details + "Castle_0.webp": png_bytes(drawing("triangle", (90, 90, 0))),
        details + "Other_0.webp": png_bytes(drawing("cross", (0, 0, 0)))}, compressed=("README",))
    monuments = "/gcompris/src/activities/explore_monuments/resource/"
    make_rcc(tmp_path / "explore_monuments.rcc", {
        monuments + "README": b"Copyright: B. Photographer\nLicense: CC0-1.0\nSource: https://x\nFiles:\nde/castle.webp\n",
        monuments + "de/castle.webp": png_bytes(drawing("bar", (0, 0, 0)))})
    manifests = mri.build(tmp_path / "real", ["details"], size=32, min_pictures=3, rcc_root=tmp_path,
                          landmarks={"castle": mri.Landmark("Castle", ("de/castle.webp",))})
    rows = manifests["details"]["rows"]
    assert [r["theme"] for r in rows] == ["Castle_background", "Castle_0", "Castle_1", "Castle_10", "castle"]
    assert [r["licence"] for r in rows] == ["CC-BY-SA 4.0"] * 4 + ["CC0-1.0"]
    assert rows[0]["credit"] == "2008 Someone; based on a photo by A. Photographer"
    assert rows[4]["credit"] == "B. Photographer; https://x"
    assert rows[0]["file"] == f"{tmp_path}/details.rcc:{details}Castle_background.webp"
    photo = Image.open(tmp_path / "real" / "details" / "castle" / "00_castle-background.png")
    assert photo.size == (32, 32)
    assert photo.getpixel((8, 16)) == (255, 255, 255) and photo.getpixel((24, 16)) == (200, 0, 0)
    assert json.loads((tmp_path / "real" / "details" / "castle" / "facts.json").read_text()) == {"name": "castle"}
