"""Reading source images safely: does an encoded image decode fully, and does its mode need a careful
conversion to 8-bit RGB (16-bit, float and transparent images, which PIL's plain `convert("RGB")` clips or
flattens onto whatever colour lies under the transparency)."""

from __future__ import annotations

import io

# Modes that PIL's plain convert("RGB") gets wrong: 16-bit and float images are clipped to white, and
# transparent pixels keep whatever colour lies under them. They are converted like the pipeline does.
CAREFUL_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F", "RGBA", "LA", "PA", "La", "RGBa")


def check_image(value: dict) -> tuple[str | None, bool]:
    """(None if the encoded image decodes fully, else the reason; whether its mode needs careful conversion)."""
    import PIL.Image

    try:
        data = value.get("bytes")
        if data is None:
            with open(value["path"], "rb") as f:
                data = f.read()
        if not data:
            return "empty file (0 bytes)", False
        with PIL.Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":  # decode at 1/8 scale: still reads every byte, 10x cheaper
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
            careful = im.mode in CAREFUL_MODES or (im.mode == "P" and "transparency" in im.info)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        return f"{type(err).__name__}: {err}", False
    return None, careful


def to_8bit_rgb(images: list, careful: list[bool]) -> dict:
    """Re-encode the images flagged `careful` as 8-bit RGB PNGs, converted without clipping."""
    import PIL.Image

    from ..pipeline_emoreg import to_rgb

    out = []
    for value, flag in zip(images, careful):
        if flag:
            data = value.get("bytes")
            if data is None:
                with open(value["path"], "rb") as f:
                    data = f.read()
            buffer = io.BytesIO()
            to_rgb(PIL.Image.open(io.BytesIO(data))).save(buffer, format="PNG")
            value = {"bytes": buffer.getvalue(), "path": value.get("path")}
        out.append(value)
    return {"image": out}


class PixelStrings:
    """Decode a column of pixel values written as text (`"70 80 82 ..."`, row-major, 0-255: FER-2013's
    `pixels`) into PNG-encoded images of `size` = (height, width): grayscale with one value per pixel, RGB
    with three. A class (not a closure) so that `datasets` can fingerprint and cache the map."""

    def __init__(self, column: str, size: tuple[int, int], source: str, split: str):
        self.column, self.size, self.source, self.split = column, tuple(size), source, split

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        import numpy as np
        import PIL.Image

        height, width = self.size
        images = []
        for text, row in zip(batch[self.column], indices):
            where = f"source {self.source!r}, split {self.split!r}, row {row}, column {self.column!r}"
            try:
                values = np.array(str(text or "").split(), dtype=np.int64)
            except ValueError:
                raise ValueError(f"{where}: pixel values must be whole numbers separated by spaces") from None
            if values.size == height * width:
                shape = (height, width)
            elif values.size == height * width * 3:
                shape = (height, width, 3)
            else:
                raise ValueError(
                    f"{where}: {values.size} pixel values, but pixels_size {height}x{width} needs "
                    f"{height * width} (grayscale) or {height * width * 3} (RGB)"
                )
            if values.min() < 0 or values.max() > 255:
                raise ValueError(
                    f"{where}: pixel values must lie in 0..255, found {values.min()}..{values.max()}"
                )
            buffer = io.BytesIO()
            PIL.Image.fromarray(values.astype(np.uint8).reshape(shape)).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
        return {self.column: images}


def pixels_size(value, source: str) -> tuple[int, int]:
    """`pixels_size: 48` or `[48, 48]` as (height, width)."""
    size = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(
            f"source {source!r}: pixels_size must be a size in pixels, 48 or [height, width]; got {value!r}"
        )
    return int(size[0]), int(size[1])
