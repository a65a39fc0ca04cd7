"""Draw the small example images in ``examples/images/`` and write ``examples/captions.jsonl``.

The images are committed; run this again only to change them::

    python examples/make_images.py

Every image is 64x64 pixels, drawn with Pillow from fixed coordinates (no randomness), so
the output is the same on every run with a given Pillow version. Two are JPEG and the rest
PNG, to show that the format is read from the bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 64
HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
CAPTIONS = HERE / "captions.jsonl"

Draw = Callable[[ImageDraw.ImageDraw], None]


def _star(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = outer if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def red_circle(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((10, 10, 54, 54), fill=(220, 30, 30), outline=(120, 0, 0), width=2)


def blue_square(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((12, 12, 52, 52), fill=(30, 70, 210), outline=(10, 20, 90), width=2)


def green_triangle(d: ImageDraw.ImageDraw) -> None:
    d.polygon([(32, 8), (57, 54), (7, 54)], fill=(40, 170, 60), outline=(10, 80, 20))


def yellow_star(d: ImageDraw.ImageDraw) -> None:
    d.polygon(_star(32, 34, 27, 11), fill=(250, 210, 20), outline=(150, 110, 0))


def cat(d: ImageDraw.ImageDraw) -> None:
    orange, dark = (235, 140, 40), (60, 30, 10)
    d.polygon([(12, 26), (16, 6), (28, 18)], fill=orange, outline=dark)  # left ear
    d.polygon([(52, 26), (48, 6), (36, 18)], fill=orange, outline=dark)  # right ear
    d.ellipse((10, 14, 54, 56), fill=orange, outline=dark, width=2)  # head
    d.ellipse((20, 28, 27, 35), fill=(40, 160, 60))  # eyes
    d.ellipse((37, 28, 44, 35), fill=(40, 160, 60))
    d.polygon([(29, 40), (35, 40), (32, 44)], fill=(230, 100, 120))  # nose
    for y in (42, 46):  # whiskers
        d.line((4, y - 2, 24, y), fill=dark)
        d.line((40, y, 60, y - 2), fill=dark)


def house(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((14, 30, 50, 56), fill=(200, 160, 110), outline=(90, 60, 30))  # walls
    d.polygon([(8, 31), (32, 8), (56, 31)], fill=(180, 40, 40), outline=(90, 20, 20))  # roof
    d.rectangle((28, 40, 36, 56), fill=(100, 60, 30))  # door
    d.rectangle((18, 36, 25, 43), fill=(170, 210, 240), outline=(60, 60, 60))  # window


def sun_over_sea(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, 63, 40), fill=(120, 190, 245))  # sky
    d.rectangle((0, 40, 63, 63), fill=(20, 80, 160))  # sea
    for i in range(12):  # rays
        a = i * math.pi / 6
        d.line(
            (
                32 + 14 * math.cos(a),
                24 + 14 * math.sin(a),
                32 + 20 * math.cos(a),
                24 + 20 * math.sin(a),
            ),
            fill=(255, 200, 0),
            width=2,
        )
    d.ellipse((22, 14, 42, 34), fill=(255, 220, 0))


def tree(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 54, 63, 63), fill=(90, 170, 70))  # grass
    d.rectangle((28, 36, 36, 56), fill=(110, 70, 30))  # trunk
    d.ellipse((12, 6, 52, 42), fill=(30, 130, 40), outline=(10, 70, 20))  # crown


# (file name, drawing, caption)
EXAMPLES: list[tuple[str, Draw, str]] = [
    ("red_circle.png", red_circle, "a red circle on a white background"),
    ("blue_square.png", blue_square, "a blue square on a white background"),
    ("green_triangle.png", green_triangle, "a green triangle pointing up"),
    ("yellow_star.png", yellow_star, "a yellow five-pointed star"),
    ("cat.png", cat, "a cartoon drawing of an orange cat's face with green eyes"),
    ("house.png", house, "a small house with a red roof and a brown door"),
    ("sun_over_sea.jpg", sun_over_sea, "the sun shining in a blue sky above the sea"),
    ("tree.jpg", tree, "a green tree with a brown trunk standing on grass"),
]


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    lines = []
    for name, draw, caption in EXAMPLES:
        img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        draw(ImageDraw.Draw(img))
        path = IMAGES / name
        if name.endswith(".jpg"):
            img.save(path, format="JPEG", quality=85, optimize=True)
        else:
            img.save(path, format="PNG", optimize=True)
        lines.append(json.dumps({"image": f"images/{name}", "caption": caption}))
        print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")
    CAPTIONS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{CAPTIONS.relative_to(HERE)}: {len(lines)} captions")


if __name__ == "__main__":
    main()
