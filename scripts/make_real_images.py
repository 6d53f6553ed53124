"""Build labelled object folders from real pictures that Debian packages ship (issue 18, item 1).

    sudo bash scripts/setup_real_images.sh             # apt-get install the packages (--packages lists them)
    python scripts/make_real_images.py                  # -> data/real/{icons-dev,icons-check,kinds,details}/
    ilearn experiment objects --objects data/real/icons-dev --report reports/real-icons-dev

Nothing is downloaded: every picture comes from files that the packages installed (the icon themes under
/usr/share/icons, OpenClipart under /usr/share/openclipart/png, two emoji fonts and EmojiOne's SVGs, photos in
GCompris's compiled Qt resource files under /usr/share/gcompris-qt/rcc). The output
is the `objects` scenario's format (one subfolder per object with its pictures and a facts.json; see
src/ilearn/evaluation/scenarios/objects.py) plus a manifest.json per set and one for the whole build: for every
picture its source package, theme or artist, licence and original file. docs/real-images.md describes the sets.

Sets:
- icons-dev, icons-check: disjoint sets of 12 freedesktop icon names (printer, camera, keyboard...). Each icon
  theme family is one artist's drawing of the named thing, so a test picture is a new view of a taught object
  drawn by an artist the learner has not seen. icons-dev is for development, icons-check for the final check.
- kinds: 12 kinds of thing (apple, dog, guitar...), each with several different instances drawn by different
  OpenClipart artists and three emoji styles: a test picture is a new instance of a taught kind.
- details: 11 landmarks and paintings photographed in GCompris's "details" game: the whole photo, round crops
  of its details, and for three of them another photographer's photo ("explore_monuments"): photographs, and a
  test picture is a part or another photo of a taught object. (GCompris's "categorization" photos are not used.)

Every picture is flattened on white (transparent pixels composited), cropped to its drawing (not a photo) and
fitted into a `--size` square, the picture's aspect kept. Derived themes (mate from gnome, elementary-xfce from elementary,
Obsidian from Faenza, Faba under Moka, Papirus from Paper) are searched as one family, and Adwaita's "legacy"
folder (GNOME's drawings at 48 px) is skipped, so that no artist counts twice; within an object, a picture that is
a near copy of one already kept (the same drawing shipped by two themes) is dropped, and so is an almost blank
one (a white drawing on white). An
object with fewer than `--min-pictures` pictures left is left out with a warning. The build is deterministic:
the same packages give the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger("make_real_images")

ICON_ROOT = Path("/usr/share/icons")
CLIPART_ROOT = Path("/usr/share/openclipart/png")
NOTO_EMOJI = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
SYMBOLA = Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")
EMOJIONE_SVG = Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0/assets/svg")
GCOMPRIS_RCC = Path("/usr/share/gcompris-qt/rcc")
PICTURE_SUFFIXES = (".png", ".svg", ".svgz")


@dataclass(frozen=True)
class Family:
    """One artist's icon style: theme folders searched in order (a derived theme after its original)."""

    key: str
    themes: tuple[tuple[str, str], ...]
    """(Debian package, theme folder under the icon root) pairs."""
    licence: str
    skip: tuple[str, ...] = ()
    """Folder names whose icons are another family's drawings (Adwaita's "legacy" holds GNOME's)."""


# Licences as the packages' /usr/share/doc/PACKAGE/copyright files state them for the icon artwork.
FAMILIES: tuple[Family, ...] = (
    Family("adwaita", (("adwaita-icon-theme", "Adwaita"),), "CC-BY-SA-3.0 or LGPL-3", skip=("legacy",)),
    Family("gnome", (("gnome-icon-theme", "gnome"), ("mate-icon-theme", "mate")), "GPL-2+ / GPL-3+; LGPL-3+ or CC-BY-SA"),
    Family("tango", (("tango-icon-theme", "Tango"),), "public domain"),
    Family("oxygen", (("oxygen-icon-theme", "oxygen"),), "LGPL-3+"),
    Family("breeze", (("breeze-icon-theme", "breeze"),), "LGPL-3+"),
    Family("elementary", (("elementary-icon-theme", "elementary"), ("elementary-xfce-icon-theme", "elementary-xfce")),
           "GPL-3.0-or-later / GPL-2+"),
    Family("faenza", (("faenza-icon-theme", "Faenza"), ("obsidian-icon-theme", "Obsidian")), "GPL-3+ / GPL-3"),
    Family("moka", (("moka-icon-theme", "Moka"), ("faba-icon-theme", "Faba")), "CC-BY-SA-4.0 or GPL-3+"),
    Family("paper", (("paper-icon-theme", "Paper"), ("papirus-icon-theme", "Papirus")), "CC-BY-SA-3.0; GPL-3"),
    Family("numix", (("numix-icon-theme", "Numix"),), "GPL-3+"),
    Family("nuovext", (("lxde-icon-theme", "nuoveXT2"),), "LGPL-3+"),
    Family("deepin", (("deepin-icon-theme", "bloom"),), "LGPL-3+"),
    Family("suru", (("suru-icon-theme", "suru"),), "CC-BY-SA-3.0 / GPL-3"),
    Family("gartoon", (("gnome-icon-theme-gartoon", "gartoon"),), "GPL-2+"),
    Family("nuovo", (("gnome-icon-theme-nuovo", "Nuovo"),), "GPL (see the package's copyright file)"),
    Family("yasis", (("gnome-icon-theme-yasis", "yasis"),), "GPL (see the package's copyright file)"),
)
ICON_PACKAGES = tuple(dict.fromkeys(p for f in FAMILIES for p, _ in f.themes))
OTHER_PACKAGES = ("openclipart-png", "fonts-noto-color-emoji", "fonts-symbola", "ruby-gemojione", "gcompris-qt-data",
                  "librsvg2-bin")


@dataclass(frozen=True)
class IconObject:
    """An object of an icon set: its freedesktop icon name(s), in order of preference, and one more fact."""

    icons: tuple[str, ...]
    use: str


# Folder name -> object. Names from the freedesktop icon naming specification; each object in 9+ families.
ICON_SETS: dict[str, dict[str, IconObject]] = {
    "icons-dev": {
        "printer": IconObject(("printer",), "printing documents"),
        "camera": IconObject(("camera-photo",), "taking photos"),
        "keyboard": IconObject(("input-keyboard",), "typing"),
        "computer_mouse": IconObject(("input-mouse",), "pointing and clicking"),
        "battery": IconObject(("battery",), "storing electric power"),
        "computer": IconObject(("computer",), "running programs"),
        "hard_disk": IconObject(("drive-harddisk",), "storing files"),
        "compact_disc": IconObject(("media-optical",), "holding music or data"),
        "trash_can": IconObject(("user-trash",), "throwing things away"),
        "scanner": IconObject(("scanner",), "scanning paper documents"),
        "gamepad": IconObject(("input-gaming",), "playing video games"),
        "calculator": IconObject(("accessories-calculator",), "doing sums"),
    },
    "icons-check": {
        "monitor": IconObject(("video-display",), "showing the picture of a computer"),
        "floppy_disk": IconObject(("media-floppy",), "carrying files between computers"),
        "memory_card": IconObject(("media-flash",), "storing photos in a camera"),
        "music_player": IconObject(("multimedia-player",), "listening to music"),
        "webcam": IconObject(("camera-web",), "video calls"),
        "mobile_phone": IconObject(("phone",), "making calls"),
        "drawing_tablet": IconObject(("input-tablet",), "drawing with a pen"),
        "sound_card": IconObject(("audio-card",), "playing sound on a computer"),
        "calendar": IconObject(("x-office-calendar",), "keeping appointments"),
        "parcel": IconObject(("package-x-generic",), "sending things by post"),
        "headphones": IconObject(("audio-headphones",), "listening without disturbing others"),
        "notepad": IconObject(("accessories-text-editor",), "writing notes"),
    },
}


@dataclass(frozen=True)
class Kind:
    """A kind of thing for the instances set: its emoji and OpenClipart files (paths under the clip-art root)."""

    emoji: str
    """The emoji's code points, e.g. "1F34E" (joined by "-" for a sequence)."""
    use: str
    clipart: tuple[str, ...] = field(default=())


KINDS: dict[str, Kind] = {
    "apple": Kind("1F34E", "eating", (
        "food/fruit/an_apple_01.png", "food/fruit/another_apple_01.png", "food/fruit/apple.png",
"food/fruit/apple_martin_schmidt-li_01r.png",
        "food/fruit/cartoon_apple_k_yager_01.png", "food/fruit/apple_bitten_dan_gerhard_01.png",
        "food/fruit/apple_with_worm_dan_gerh_01.png", "food/fruit/eris_apple_nurbldoff_01.png")),
    "dog": Kind("1F415", "keeping as a pet", (
        "animals/mammals/dog_01_drawn_with_strai_01.png", "animals/mammals/dog_02_drawn_with_strai_01.png",
        "animals/mammals/dog_03_drawn_with_strai_01.png", "animals/mammals/dog_04_drawn_with_strai_01.png",
        "animals/mammals/dog_05_drawn_with_strai_01.png", "animals/mammals/dog_06_drawn_with_strai_01.png",
        "animals/mammals/dog_on_leash_gerald_g._01.png", "animals/mammals/dogs/bored_dog_01.png",
        "animals/mammals/dogs/dog_head_nicu_buculei_01.png")),
    "cat": Kind("1F408", "keeping as a pet", (
        "animals/mammals/cartoon_cat_gerald_g._01.png", "animals/mammals/housecats/gatto_cat_architetto_fra_01.png",
        "animals/mammals/housecats/gatto_cat_architetto_fra_02.png",
        "animals/mammals/housecats/gatto_cat_architetto_fra_03.png",
        "animals/mammals/housecats/gatto_cat_architetto_fra_04.png",
        "animals/mammals/housecats/gattina_cat_architetto_f_01.png",
        "animals/mammals/housecats/sleeping_cat_ron_golan_01.png")),
    "car": Kind("1F697", "driving", (
        "transportation/vehicles/car.png", "transportation/vehicles/old_car_lumen_design_st_r.png",
        "transportation/vehicles/skoda_car_alejandro_teja_.png",
"transportation/formula_one_car_gerald_g_01.png",
        "transportation/car_jamin_ellis_.png")),
    "clock": Kind("1F570", "telling the time", (
        "signs_and_symbols/clocks/clock_michael_breuer_01.png", "signs_and_symbols/clocks/alarm_clock_gerald_g._01.png",
        "signs_and_symbols/clocks/alarm_clock_mike_powers_.png", "signs_and_symbols/clocks/modern_clock_chris_kemps_01.png",
        "signs_and_symbols/clocks/analog_clock_jonathan_di_01.png", "signs_and_symbols/clocks/analogue_clock_01.png")),
    "house": Kind("1F3E0", "living in", (
"buildings/homes/house_christoph_brill_01.png",
        "buildings/homes/small_house_01.png", "buildings/homes/house_gabrielle_nowicki_.png",
        "buildings/homes/house_fudriot_omic.ch_01.png", "buildings/homes/house.png", "buildings/homes/my_house_01.png",
        "buildings/homes/house_juliane_krug_01.png")),
    "guitar": Kind("1F3B8", "playing music", (
        "recreation/music/electric_guitar_andrea__01r.png", "recreation/music/guitar_ganson.png",
        "recreation/music/guitar_profile_philippe__01.png", "recreation/music/bass_guitar_a.j._ashton_.png",
        "recreation/music/guitar_jarno_vasamaa1.png")),
    "scissors": Kind("2702", "cutting paper", (
        "office/scissors.png", "office/scissors_01.png", "office/scissors_02.png", "office/scissors_03.png",
        "office/scissors_forbici_franc_.png")),
    "telephone": Kind("260E", "making calls", (
        "office/telephone/telephone_receiver_01.png", "office/telephone/red_telephone_mimooh_01.png",
        "office/telephone/phone_handset_gray_einar_01.png", "office/telephone/phone.png",
        "computer/classic_phone_zazou.png", "office/telephone/phone_sergio_luiz_araujo_01.png")),
    "trumpet": Kind("1F3BA", "playing music", (
        "recreation/music/trumpet_b_flat_colour_ganso.png", "recreation/music/trumpet_pocket_colour_ganso.png",
        "recreation/music/trumpet_herald__ganson.png")),
    "tree": Kind("1F333", "giving shade", (
        "plants/trees/tree_01.png", "plants/trees/cartoon_tree_01.png", "plants/trees/fall_coloured_tree_geral_01.png",
        "plants/trees/evergreen/plain_tree_01.png", "plants/trees/tree_whit_fruits_01.png",
        "plants/trees/evergreen/tree.png", "plants/trees/evergreen/tree_02.png")),
    "butterfly": Kind("1F98B", "pollinating flowers", (
        "animals/bugs/farfalla_butterfly_fra1.png", "animals/bugs/butterfly_jonvdveen_01.png",
        "animals/bugs/butterfly_jonathan_dietr_01.png", "animals/bugs/butterfly_from_star_thom_01.png")),
}
CLIPART_LICENCE = "public domain (Creative Commons Public Domain Dedication)"
EMOJI_STYLES = (  # (style, package, licence)
    ("noto", "fonts-noto-color-emoji", "OFL-1.1 (font) / Apache-2.0 (images)"),
    ("emojione", "ruby-gemojione", "CC-BY-SA-4.0"),
    ("symbola", "fonts-symbola", "free for any use (George Douros)"),
)




@dataclass(frozen=True)
class Landmark:
    """A building or painting photographed in GCompris's "details" activity (the whole photo and small crops of
    its details), and other photos of it from the "explore_monuments" activity."""

    details: str
    """The picture's name there: NAME_background.webp is the photo, NAME_0.webp, NAME_1.webp... its details."""
    photos: tuple[str, ...] = ()
    """Paths under explore_monuments/resource/ of other photographers' photos of it."""


DETAILS_ROOT = "/gcompris/src/activities/details/resource/image/"
MONUMENTS_ROOT = "/gcompris/src/activities/explore_monuments/resource/"
LANDMARKS: dict[str, Landmark] = {
    "neuschwanstein_castle": Landmark("Neuschwanstein", ("germany/neuschwansteinCastle.webp",)),
    "taj_mahal": Landmark("TajMahal", ("wonders/tajMahal.webp",)),
    "pyramids_of_giza": Landmark("GizahPyramids", ("egypt/greatPyramidOfGiza.webp",)),
    "egeskov_castle": Landmark("EgeskovSlotSpejling"),
    "nagoya_castle": Landmark("Nagoya"),
    "tower_bridge": Landmark("TowerBridgeLondon"),
    "cafe_terrace_at_night": Landmark("Gogh4"),
    "the_night_cafe": Landmark("Van_Gogh_The_Night_Cafe"),
    "portrait_of_pere_tanguy": Landmark("PortraitOfPereTanguy"),
    "harvest_at_la_crau": Landmark("VincentVanGogh0019"),
    "painter_on_the_road_to_tarascon": Landmark("VincentVanGogh0013"),
}


# ------------------------------------------------------------------------------------------- finding icons
def icon_detail(relative: Path) -> int:
    """The drawing's detail level from its folder names: "48x48", "48", "48@2x", "32x32@2x" -> pixels;
    "scalable" -> 512 (a vector drawn for any size); 0 when no size is named."""
    for part in relative.parts[:-1]:
        match = re.fullmatch(r"(\d+)(?:x\d+)?(?:@(\d)x)?", part)
        if match:
            return int(match.group(1)) * int(match.group(2) or 1)
        if part == "scalable":
            return 512
    return 0


def index_theme(theme_dir: Path, skip: Sequence[str] = ()) -> dict[str, list[tuple[int, bool, str]]]:
    """Icon name -> [(detail, is vector, path)] of a theme's full-colour icons (symbolic ones are skipped, and
    so are the folders named in `skip`)."""
    index: dict[str, list[tuple[int, bool, str]]] = {}
    for dirpath, dirnames, filenames in os.walk(theme_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            stem, suffix = os.path.splitext(name)
            path = Path(dirpath) / name
            relative = path.relative_to(theme_dir)
            if suffix not in PICTURE_SUFFIXES or "symbolic" in str(relative):
                continue
            index.setdefault(stem, []).append((icon_detail(relative), suffix != ".png", str(path)))
    return index


def pick_icon(candidates: Sequence[tuple[int, bool, str]]) -> str:
    """The most detailed drawing; at equal detail a vector, then the shortest path (no @2x copy)."""
    return min(candidates, key=lambda c: (-c[0], not c[1], len(c[2]), c[2]))[2]


# ------------------------------------------------------------------------------------------- pictures
def load_picture(path: Path, size: int) -> Image.Image:
    """An RGBA picture from a PNG, or from an SVG/SVGZ rasterised at `size` by rsvg-convert (librsvg2-bin)."""
    if path.suffix == ".png":
        image = Image.open(path)
        image.load()
        return image.convert("RGBA")
    if shutil.which("rsvg-convert") is None:
        raise RuntimeError("rsvg-convert is missing: apt-get install librsvg2-bin (scripts/setup_real_images.sh)")
    png = subprocess.run(["rsvg-convert", "-w", str(size), "-h", str(size), "-a", str(path)],
                         check=True, capture_output=True).stdout
    return Image.open(io.BytesIO(png)).convert("RGBA")


def flatten(image: Image.Image, size: int, background: tuple[int, int, int] = (255, 255, 255),
            margin: float = 0.06, trim: bool = True) -> Image.Image:
    """`image` composited on `background`, cropped to its drawing (`trim`) and fitted, aspect kept, in the middle
    of a `size` square with `margin` of the side left around it (clip art often sits small on a large canvas).
    A photo is not trimmed and gets no margin: it fills the square's longer side."""
    image = image.convert("RGBA")
    if trim:
        flat = Image.new("RGBA", image.size, background + (255,))
        flat.alpha_composite(image)
        box = ink_box(flat.convert("RGB"), background)
        if box is not None:
            image = image.crop(box)
    inner = max(1, round(size * (1 - 2 * margin))) if trim else size
    scale = inner / max(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (size, size), background + (255,))
    canvas.alpha_composite(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return canvas.convert("RGB")


def ink_box(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255),
            tolerance: int = 12) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels that differ from `background` by more than `tolerance` in any channel."""
    difference = np.abs(np.asarray(image.convert("RGB"), dtype=np.int16) - np.array(background, dtype=np.int16))
    ys, xs = np.nonzero(difference.max(axis=2) > tolerance)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def signature(image: Image.Image) -> np.ndarray:
    """A 32x32 RGB thumbnail in [0, 1] of a flattened picture, to compare two drawings."""
    return np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=np.float32) / 255.0


def is_blank(image: Image.Image, min_ink: float = 0.02) -> bool:
    """Whether fewer than `min_ink` of a flattened picture's pixels differ visibly from white."""
    return float((signature(image).min(axis=2) < 0.94).mean()) < min_ink


def near_copy(a: np.ndarray, b: np.ndarray, max_difference: float = 0.05) -> bool:
    """Whether two signatures are the same drawing: the mean largest channel difference over the pixels where
    either has ink is at most `max_difference` (copies shipped by two themes: <= 0.05; two artists' compact
    discs, the most alike drawings here: >= 0.06)."""
    ink = (a.min(axis=2) < 0.94) | (b.min(axis=2) < 0.94)
    if not ink.any():
        return True
    return float(np.abs(a - b).max(axis=2)[ink].mean()) <= max_difference


def render_emoji(style: str, codepoints: str, size: int, emojione_dir: Path = EMOJIONE_SVG,
                 noto: Path = NOTO_EMOJI, symbola: Path = SYMBOLA) -> tuple[Image.Image, str]:
    """An emoji drawn in one style: (RGBA picture, the file it came from)."""
    text = "".join(chr(int(cp, 16)) for cp in codepoints.split("-"))
    if style == "emojione":
        path = emojione_dir / f"{codepoints.upper()}.svg"
        return load_picture(path, size), str(path)
    font_path, font_size, colour = (noto, 109, True) if style == "noto" else (symbola, 200, False)
    font = ImageFont.truetype(str(font_path), font_size)
    canvas = Image.new("RGBA", (font_size * 2, font_size * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((font_size // 4, font_size // 4), text, font=font, embedded_color=colour,
                                fill=None if colour else (0, 0, 0, 255))
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"{font_path.name} has no glyph for {codepoints}")
    return canvas.crop(box), str(font_path)


# ------------------------------------------------------------------------------------------- sets
@dataclass
class Candidate:
    """A picture that may join an object: where it came from, and a way to draw it."""

    source: dict
    draw: object  # () -> RGBA Image
    trim: bool = True
    """Crop to the drawing before fitting (not for photos)."""


def keep_pictures(candidates: Iterable[Candidate], size: int) -> list[tuple[Image.Image, dict]]:
    """The flattened pictures of one object, without blank ones and near copies of an earlier one."""
    kept: list[tuple[Image.Image, dict, np.ndarray]] = []
    for candidate in candidates:
        try:
            picture = flatten(candidate.draw(), size, trim=candidate.trim)
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            logger.warning("skipping %s: %s", candidate.source["file"], exc)
            continue
        if is_blank(picture):
            logger.info("skipping %s: almost blank on white", candidate.source["file"])
            continue
        sig = signature(picture)
        copy = next((s for _, s, other in kept if near_copy(sig, other)), None)
        if copy is not None:
            logger.info("skipping %s: a near copy of %s", candidate.source["file"], copy["file"])
            continue
        kept.append((picture, candidate.source, sig))
    return [(picture, source) for picture, source, _ in kept]


def icon_candidates(obj: IconObject, icon_root: Path, families: Sequence[Family], cache: dict) -> list[Candidate]:
    """One candidate per family that draws one of the object's icon names (its first theme that does)."""
    out = []
    for family in families:
        for package, theme in family.themes:
            if theme not in cache:
                folder = icon_root / theme
                cache[theme] = index_theme(folder, family.skip) if folder.is_dir() else {}
            found = next((cache[theme][n] for n in obj.icons if n in cache[theme]), None)
            if found:
                path = pick_icon(found)
                out.append(Candidate({"source": "icon-theme", "package": package, "family": family.key,
                                      "theme": theme, "licence": family.licence, "file": path},
                                     lambda p=Path(path): load_picture(p, 512)))
                break
    return out


def kind_candidates(kind: Kind, clipart_root: Path, size: int, emoji: dict,
                    emoji_styles: Sequence[tuple[str, str, str]] = EMOJI_STYLES) -> list[Candidate]:
    """The kind's emoji in each style, then its OpenClipart pictures."""
    out = []
    for style, package, licence in emoji_styles:
        out.append(Candidate({"source": "emoji", "package": package, "family": style, "theme": style,
                              "licence": licence, "file": f"{style}:{kind.emoji}"},
                             lambda s=style: render_emoji(s, kind.emoji, 4 * size, **emoji)[0]))
    for relative in kind.clipart:
        path = clipart_root / relative
        artist = Path(relative).stem
        out.append(Candidate({"source": "openclipart", "package": "openclipart-png", "family": "openclipart",
                              "theme": artist, "licence": CLIPART_LICENCE, "file": str(path)},
                             lambda p=path: load_picture(p, 4 * size)))
    return out


def read_qt_resources(path: Path) -> dict[str, bytes]:
    """The files in a compiled Qt resource file (.rcc, formats 1-3): their path inside it -> bytes. Entries
    compressed with zlib are inflated; zstd ones, which this reader does not handle, are left out."""
    data = path.read_bytes()
    if data[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, parent = stack.pop()
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", data[at:at + 6])
        path_here = f"{parent}/{name(name_offset)}" if index else ""
        if flags & 2:  # a directory: its children are count nodes from first
            count, first = struct.unpack(">II", data[at + 6:at + 14])
            stack += [(child, path_here) for child in range(first, first + count)]
        elif not flags & 4:
            (offset,) = struct.unpack(">I", data[at + 10:at + 14])
            (size,) = struct.unpack(">I", data[payload + offset:payload + offset + 4])
            blob = data[payload + offset + 4:payload + offset + 4 + size]
            files[path_here] = zlib.decompress(blob[4:]) if flags & 1 else blob
    return files


def readme_credits(text: str) -> dict[str, tuple[str, str]]:
    """File name -> (licence, credit) from a GCompris README: blocks of "Copyright:", "License:", "Source:" or
    "Comment:" lines and the file names they cover."""
    out = {}
    for block in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(Copyright|License|Source|Comment):[ \t]*(.*)$", block, re.M))
        credit = "; ".join(v.strip() for k, v in fields.items() if k != "License" and v.strip())
        for file in re.findall(r"[\w.-]+\.webp", block):
            out[file] = (fields.get("License", "").strip() or "see the package's copyright file", credit)
    return out


def landmark_candidates(landmark: Landmark, rcc_root: Path, cache: dict) -> list[Candidate]:
    """A landmark's whole photo, its details in order, then its other photos."""
    for activity in ("details", "explore_monuments"):
        if activity not in cache:
            path = rcc_root / f"{activity}.rcc"
            cache[activity] = read_qt_resources(path) if path.is_file() else {}
    details, monuments = cache["details"], cache["explore_monuments"]
    credits = {**readme_credits(details.get(DETAILS_ROOT + "README", b"").decode("utf-8", "replace")),
               **readme_credits(monuments.get(MONUMENTS_ROOT + "README", b"").decode("utf-8", "replace"))}
    parts = sorted((k for k in details if k.startswith(f"{DETAILS_ROOT}{landmark.details}_")
                    and re.fullmatch(r"\d+", k.rsplit("_", 1)[1].split(".")[0])),
                   key=lambda k: int(k.rsplit("_", 1)[1].split(".")[0]))
    files = [(details, f"{DETAILS_ROOT}{landmark.details}_background.webp", "details"), *(
        (details, k, "details") for k in parts), *((monuments, MONUMENTS_ROOT + p, "monuments")
                                                    for p in landmark.photos)]
    out = []
    for resources, key, activity in files:
        if key not in resources:
            logger.warning("%s: no %s in gcompris-qt-data", landmark.details, key)
            continue
        file = key.rsplit("/", 1)[1]
        licence, credit = credits.get(file, ("see the package's copyright file", ""))
        out.append(Candidate({"source": "photo", "package": "gcompris-qt-data", "family": f"gcompris-{activity}",
                              "theme": file.rsplit(".", 1)[0], "licence": licence, "credit": credit,
                              "file": f"{rcc_root}/{'details' if activity == 'details' else 'explore_monuments'}"
                                      f".rcc:{key}"},
                             lambda b=resources[key]: Image.open(io.BytesIO(b)).convert("RGBA"), trim=False))
    return out


def write_object(folder: Path, pictures: Sequence[tuple[Image.Image, dict]], facts: dict[str, str]) -> list[dict]:
    """Write one object folder (pictures named NN_family.png, facts.json); its manifest rows."""
    folder.mkdir(parents=True)
    rows = []
    for i, (picture, source) in enumerate(pictures):
        name = f"{i:02d}_{re.sub(r'[^A-Za-z0-9]+', '-', source['theme']).strip('-').lower()}.png"
        picture.save(folder / name, format="PNG", optimize=False)
        rows.append({"picture": f"{folder.name}/{name}", "object": folder.name, **source})
    (folder / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return rows


def build_set(out: Path, objects: dict[str, list[Candidate]], facts: dict[str, dict[str, str]], *, size: int,
              min_pictures: int) -> dict:
    """Write a set: one folder per object with at least `min_pictures` pictures; returns its manifest."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows, dropped = [], {}
    for name, candidates in objects.items():
        pictures = keep_pictures(candidates, size)
        if len(pictures) < min_pictures:
            logger.warning("%s/%s: %d pictures (< %d): left out", out.name, name, len(pictures), min_pictures)
            dropped[name] = len(pictures)
            continue
        rows += write_object(out / name, pictures, facts[name])
    manifest = {"set": out.name, "size": size, "objects": sorted({r["object"] for r in rows}),
                "pictures": len(rows), "left_out": dropped, "rows": rows}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def build(out: Path, sets: Sequence[str], *, size: int = 128, min_pictures: int = 6, icon_root: Path = ICON_ROOT,
          clipart_root: Path = CLIPART_ROOT, families: Sequence[Family] = FAMILIES,
          icon_sets: dict[str, dict[str, IconObject]] | None = None, kinds: dict[str, Kind] | None = None,
          emoji: dict | None = None, emoji_styles: Sequence[tuple[str, str, str]] = EMOJI_STYLES,
          rcc_root: Path = GCOMPRIS_RCC, landmarks: dict[str, Landmark] | None = None) -> dict[str, dict]:
    """Build each named set under `out`; the manifests by set (also written to out/manifest.json)."""
    icon_sets = ICON_SETS if icon_sets is None else icon_sets
    kinds = KINDS if kinds is None else kinds
    landmarks = LANDMARKS if landmarks is None else landmarks
    manifests: dict[str, dict] = {}
    cache: dict = {}
    for set_name in sets:
        if set_name in icon_sets:
            objects = {n: icon_candidates(o, icon_root, families, cache) for n, o in icon_sets[set_name].items()}
            facts = {n: {"name": n.replace("_", " "), "use": o.use} for n, o in icon_sets[set_name].items()}
        elif set_name == "kinds":
            objects = {n: kind_candidates(k, clipart_root, size, emoji or {}, emoji_styles) for n, k in kinds.items()}
            facts = {n: {"name": n.replace("_", " "), "use": k.use} for n, k in kinds.items()}
        elif set_name == "details":
            objects = {n: landmark_candidates(m, rcc_root, cache) for n, m in landmarks.items()}
            facts = {n: {"name": n.replace("_", " ")} for n in landmarks}
        else:
            raise SystemExit(f"unknown set {set_name!r}; choose from {', '.join([*icon_sets, 'kinds', 'details'])}")
        manifests[set_name] = build_set(out / set_name, objects, facts, size=size, min_pictures=min_pictures)
        m = manifests[set_name]
        logger.info("%s: %d objects, %d pictures", set_name, len(m["objects"]), m["pictures"])
    path = out / "manifest.json"  # the sets built so far: a build of some sets keeps the others' entries
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    summary.update({name: {k: v for k, v in m.items() if k != "rows"} for name, m in manifests.items()})
    path.write_text(json.dumps(dict(sorted(summary.items())), indent=1) + "\n", encoding="utf-8")
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/real"), help="folder for the sets (git-ignored)")
    parser.add_argument("--sets", nargs="+", default=[*ICON_SETS, "kinds", "details"], help="which sets to build")
    parser.add_argument("--size", type=int, default=128, help="side of the square pictures, in pixels")
    parser.add_argument("--min-pictures", type=int, default=6, help="leave out objects with fewer pictures")
    parser.add_argument("--icon-root", type=Path, default=ICON_ROOT)
    parser.add_argument("--clipart-root", type=Path, default=CLIPART_ROOT)
    parser.add_argument("--packages", action="store_true", help="print the Debian packages it reads, and stop")
    args = parser.parse_args()
    if args.packages:
        print(" ".join(ICON_PACKAGES + OTHER_PACKAGES))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifests = build(args.out, args.sets, size=args.size, min_pictures=args.min_pictures, icon_root=args.icon_root,
                      clipart_root=args.clipart_root)
    for name, m in manifests.items():
        counts = {}
        for row in m["rows"]:
            counts[row["object"]] = counts.get(row["object"], 0) + 1
        print(f"{args.out / name}: {len(m['objects'])} objects, {m['pictures']} pictures "
              f"({', '.join(f'{k} {v}' for k, v in counts.items())})"
              + (f"; left out: {m['left_out']}" if m["left_out"] else ""))


if __name__ == "__main__":
    main()
