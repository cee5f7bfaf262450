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
