"""The input path, split between host and device (docs/architecture.md, "Input path").

The loader (``LoaderTransform`` + ``Collator``, in DataLoader workers) decodes, augments and batches
**uint8** images at a small working size; ``DeviceFinisher`` resizes to the model's input size and
normalises as the first step of each train/eval step, on the accelerator. A few CPU cores never build
float 224-px tensors, and the finishing step matches ``build_image_processor``'s saved processor, so
``pipeline`` inference sees what training saw.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvF

from ..configuration_emoreg import COLOR_MODES  # the model's own, defined once there (remote code)
from .ferplus import DISTRIBUTION

AUGMENTATIONS = ("none", "basic", "padcrop", "randaugment", "trivialaugment", "autoaugment")
logger = logging.getLogger(__name__)
# PIL modes with one colour channel: images of such a source are grayscale.
GRAYSCALE_PIL_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_pil(value) -> PIL.Image.Image:
    """Decoded PIL image, or an undecoded ``{"bytes", "path"}`` value from ``Image(decode=False)``."""
    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, dict):
        data = value.get("bytes")
        return PIL.Image.open(io.BytesIO(data) if data is not None else value["path"])
    raise TypeError(f"expected a PIL image or an encoded image dict, got {type(value).__name__}")


def _to_uint8_chw(image, size: int, grayscale: bool = False) -> torch.Tensor:
    image = _to_pil(image)
    if image.format == "JPEG" and min(image.size) > 2 * size:
        image.draft("RGB", (size, size))  # DCT-domain downscale while decoding: large JPEGs get cheap
    if grayscale and image.mode != "L":  # luminance (ITU-R 601), as EmoReg converts for such a pathway
        image = image.convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return tvF.pil_to_tensor(image)


class LoaderTransform:
    """``batch["image"]`` (PIL or encoded) -> ``pixel_values``: uint8 CHW tensors at ``working_size``.

    Use with ``dataset.with_transform(LoaderTransform(...))``. Picklable, so DataLoader workers work.
    Evaluation (and ``augmentation="none"``) only resizes to the working size; training policies run
    torchvision v2 on uint8: ``basic`` = random resized crop + flip; ``padcrop`` = pad by an eighth of the
    side (reflected), crop back at a random offset, flip: the small-image policy (CIFAR ResNets), which
    keeps the whole object, where a random resized crop may keep 8% of a 48-px face; the others add
    RandAugment, TrivialAugmentWide or AutoAugment (ImageNet policy) after crop + flip.
    ``color_mode="grayscale"``: every image becomes its luminance (copied to three channels), so a
    pathway trained on grayscale faces sees grayscale everywhere, whatever a source's mode.
    """

    def __init__(
        self, working_size: int, augmentation: str = "none", train: bool = False, color_mode: str = "rgb"
    ):
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {augmentation!r}")
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {list(COLOR_MODES)}, got {color_mode!r}")
        if int(working_size) < 1:
            raise ValueError(f"working_size must be a positive int, got {working_size!r}")
        self.working_size, self.augmentation, self.train = int(working_size), augmentation, bool(train)
        self.color_mode = color_mode
        self._ops = None

    def _build(self):
        s = self.working_size
        if not self.train or self.augmentation == "none":
            return v2.Resize((s, s), antialias=True)
        if self.augmentation == "padcrop":  # the image is first resized to the working size (__call__)
            return PadCropFlip(max(1, s // 8))
        ops = [v2.RandomResizedCrop(s, antialias=True), v2.RandomHorizontalFlip()]
        ops += {
            "basic": [],
            "randaugment": [v2.RandAugment()],
            "trivialaugment": [v2.TrivialAugmentWide()],
            "autoaugment": [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)],
        }[self.augmentation]
        return v2.Compose(ops)

    def __call__(self, batch: dict) -> dict:
        if "image" not in batch:
            raise KeyError(f"LoaderTransform expects an 'image' column; the batch has {sorted(batch)}")
        if self._ops is None:
            self._ops = self._build()
        s, resize_only = self.working_size, not self.train or self.augmentation == "none"
        resize_first = resize_only or self.augmentation == "padcrop"
        grayscale = self.color_mode == "grayscale"
        pixels = []
        for image in batch["image"]:
            x = _to_uint8_chw(image, s, grayscale)
            if resize_first and x.shape[-2:] != (s, s):
                x = tvF.resize(x, [s, s], antialias=True)
            pixels.append(x if resize_only else self._ops(x))
        out = {"pixel_values": pixels}
        if "label" in batch:
            out["labels"] = list(batch["label"])
        if DISTRIBUTION in batch:  # FER+ soft targets (training split only)
            out[DISTRIBUTION] = list(batch[DISTRIBUTION])
        return out

    def __getstate__(self):
        return {**self.__dict__, "_ops": None}

    def __repr__(self) -> str:
        return (
            f"LoaderTransform(working_size={self.working_size}, augmentation={self.augmentation!r}, "
            f"train={self.train}, color_mode={self.color_mode!r})"
        )


class PadCropFlip:
    """Reflect-pad by `padding`, crop back at a random offset, flip half the time: `v2.RandomCrop(padding=,
    padding_mode="reflect")` + `v2.RandomHorizontalFlip()` as one index gather (a quarter of their cost on
    the small images it is for). Draws from torch's global generator, like torchvision."""

    def __init__(self, padding: int):
        self.padding = int(padding)

    @staticmethod
    def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
        index = index.abs()  # -i -> i (reflect without repeating the edge, as torchvision's "reflect")
        return torch.where(index > size - 1, 2 * (size - 1) - index, index)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        p = self.padding
        dy, dx = (int(v) for v in torch.randint(-p, p + 1, (2,)))
        rows = self._reflect(torch.arange(h) + dy, h)
        cols = self._reflect(torch.arange(w) + dx, w)
        if torch.rand(()) < 0.5:
            cols = cols.flip(0)
        return image[..., rows[:, None], cols[None, :]]

    def __repr__(self) -> str:
        return f"PadCropFlip(padding={self.padding})"


class Collator:
    """Stack uint8 images and labels; optional mixup / cutmix (one of them per batch, 50/50 when both).

    Mixing happens on uint8 (rounded, <= 0.5/255 error) so batches stay small; labels become soft
    float targets ``[B, num_classes]``. timm's ``FastCollateMixup`` does the same on uint8 but mixes image by
    image in a Python loop (a float copy per image); this one blends the whole batch in one vectorised
    operation, and was not slower in `benchmarks/mixup_collate.py` (see docs/architecture.md), so it stays.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        draw_targets: bool = False,
    ):
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if (mixup_alpha or cutmix_alpha) and not num_classes:
            raise ValueError("mixup/cutmix need num_classes (soft targets are [batch, num_classes])")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        # FER+ soft targets: `probability` draws a class per sighting, else the distribution is the target
        self.draw_targets = draw_targets

    @property
    def mixes(self) -> bool:
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def without_mixing(self) -> Collator:
        """The same collation for evaluation, where images must not be mixed."""
        return Collator(num_classes=self.num_classes)

    def __call__(self, examples: list[dict]) -> dict:
        try:
            pixels = torch.stack([e["pixel_values"] for e in examples])
        except RuntimeError as err:
            shapes = sorted({tuple(e["pixel_values"].shape) for e in examples})
            raise ValueError(
                f"images in a batch differ in shape {shapes}; use one LoaderTransform size"
            ) from err
        if pixels.dtype != torch.uint8:
            raise TypeError(f"Collator expects uint8 pixel_values from LoaderTransform, got {pixels.dtype}")
        labels = torch.tensor([int(e["labels"]) for e in examples], dtype=torch.int64)
        if examples[0].get(DISTRIBUTION) is not None:  # FER+ soft targets: [B, num_classes]
            targets = torch.tensor([list(e[DISTRIBUTION]) for e in examples], dtype=torch.float32)
            # `probability` (the paper's PLD): a class drawn from each face's distribution every time the face
            # is seen, from torch's generator as the augmentations draw (seeded by the run's seed).
            labels = torch.multinomial(targets, 1).squeeze(1) if self.draw_targets else targets
        if self.mixup_alpha or self.cutmix_alpha:
            pixels, labels = self._mix(pixels, labels)
        return {"pixel_values": pixels, "labels": labels}

    def _mix(self, x: torch.Tensor, y: torch.Tensor):
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or torch.rand(()) < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        other = x.roll(1, 0)
        if use_cutmix:
            h, w = x.shape[-2:]
            ch, cw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y0, y1, x0, x1 = (
                max(cy - ch // 2, 0),
                min(cy + ch // 2, h),
                max(cx - cw // 2, 0),
                min(cx + cw // 2, w),
            )
            x = x.clone()
            x[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            x = (x.float() * lam + other.float() * (1 - lam)).round_().to(torch.uint8)
        onehot = y.float() if y.is_floating_point() else F.one_hot(y, self.num_classes).float()
        return x, onehot * lam + onehot.roll(1, 0) * (1 - lam)


class DeviceFinisher:
    """uint8 ``[B, 3, h, w]`` on any device -> float32 ``[B, 3, H, W]``: resize (bilinear) + normalise.

    The same arithmetic as ``build_image_processor(size, mean, std)``, done in float on the device.
    Normalisation runs first, at the working size, and the resize is the one pass that writes the
    full-size tensor: rescale + normalise is a per-channel affine map and bilinear (antialiased)
    interpolation weights sum to one, so the two commute exactly, and at 32 -> 224 px the affine map
    touches 49x fewer pixels. (The processor resizes in uint8 first; that rounding is < 0.5/255.)
    """

    def __init__(
        self, size: int | Sequence[int], mean: Sequence[float], std: Sequence[float], rescale: float = 1 / 255
    ):
        self.size = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.size) != 2 or len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(
                f"DeviceFinisher needs size (H, W) and 3-channel mean/std; got {size}, {mean}, {std}"
            )
        self.rescale = float(rescale)
        self._stats: dict = {}

    @classmethod
    def from_image_processor(cls, processor) -> DeviceFinisher:
        size = processor.size if not getattr(processor, "do_center_crop", False) else processor.crop_size
        if isinstance(size, int):
            size = {"height": size, "width": size}
        else:  # a dict, or transformers' SizeDict
            size = {
                k: getattr(size, k, None) if not isinstance(size, dict) else size.get(k)
                for k in ("height", "width", "shortest_edge")
            }
        if size.get("height") and size.get("width"):
            hw = (size["height"], size["width"])
        elif size.get("shortest_edge"):
            hw = (size["shortest_edge"],) * 2
        else:
            raise ValueError(f"{type(processor).__name__}: cannot read an output size from size={size}")
        if getattr(processor, "do_normalize", True):
            mean, std = processor.image_mean, processor.image_std
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        if isinstance(mean, (int, float)):
            mean, std = (mean,) * 3, (std,) * 3
        rescale = processor.rescale_factor if getattr(processor, "do_rescale", True) else 1.0
        return cls(hw, mean, std, rescale=rescale)

    def _scale_shift(self, device: torch.device):
        """``x * scale + shift == (x * rescale - mean) / std``, per channel, cached per device."""
        if device not in self._stats:
            mean = torch.tensor(self.mean, dtype=torch.float64).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float64).view(1, 3, 1, 1)
            scale, shift = self.rescale / std, -mean / std
            self._stats[device] = (scale.float().to(device), shift.float().to(device))
        return self._stats[device]

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dtype != torch.uint8:
            raise TypeError(
                f"DeviceFinisher expects uint8 pixel_values [B, 3, h, w] from the Collator, got {pixel_values.dtype}"
            )
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"DeviceFinisher expects [B, 3, h, w], got {tuple(pixel_values.shape)}")
        scale, shift = self._scale_shift(pixel_values.device)
        x = pixel_values.float().mul_(scale).add_(shift)  # at the working size: cheap
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return x

    def __getstate__(self):
        return {**self.__dict__, "_stats": {}}

    def __repr__(self) -> str:
        return f"DeviceFinisher(size={self.size}, mean={self.mean}, std={self.std})"


def build_image_processor(size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]):
    """The processor every checkpoint saves: resize to ``size`` (bilinear), rescale 1/255, normalise.

    A plain ``ViTImageProcessor`` (any architecture can use it), so ``AutoImageProcessor`` reloads it
    without this package; grayscale inputs are converted to RGB like the loader does.
    """
    from transformers import ViTImageProcessor
    from transformers.image_utils import PILImageResampling

    h, w = (size, size) if isinstance(size, int) else size
    return ViTImageProcessor(
        do_resize=True,
        size={"height": int(h), "width": int(w)},
        resample=PILImageResampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(m) for m in mean],
        image_std=[float(s) for s in std],
        do_convert_rgb=True,
    )


def _sample_images(dataset_split, sample: int) -> list[tuple[object, str]]:
    """Up to `sample` images spread over a split, undecoded where possible (cheap), each with where it is
    (source, file or row) for a message."""
    import datasets

    if isinstance(dataset_split, datasets.IterableDataset):
        sampled = []
        for i, row in enumerate(dataset_split.take(sample)):
            value = row["image"]
            path = value.get("path") if isinstance(value, dict) else None
            source = f"source {row['source']!r}, " if row.get("source") else ""
            sampled.append(
                (value, f"{source}split 'train' (streamed), {f'file {path}' if path else f'row {i}'}")
            )
        return sampled
    n = len(dataset_split)
    if n == 0:
        raise ValueError("the split is empty")
    idx = np.unique(np.linspace(0, n - 1, min(sample, n)).astype(int)).tolist()
    column = "image" if "image" in dataset_split.column_names else "img"
    subset = dataset_split.select(idx)
    if isinstance(subset.features.get(column), datasets.Image):
        subset = subset.cast_column(column, datasets.Image(decode=False))
    return [(value, f"split 'train', row {i}") for i, value in zip(idx, subset[column])]


def _sampled_headers(
    dataset_split, sample: int, on_bad_image: str, purpose: str
) -> list[tuple[tuple[int, int], str]]:
    """(size, mode) of the sampled images (headers read, pixels not decoded). An unreadable one stops with a message
    naming it (`on_bad_image: error`) or is left out and logged (`skip`), as the loader treats it; the
    loader counts it when training reads its row, so it is not counted here as well."""
    try:
        sampled = _sample_images(dataset_split, sample)
    except ValueError as error:
        raise ValueError(f"{purpose}: {error}") from None
    opened, skipped = [], []
    for value, where in sampled:
        try:
            with _to_pil(value) as image:
                opened.append((image.size, image.mode))
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
            if on_bad_image == "error":
                raise ValueError(
                    f"{purpose}: unreadable image ({type(error).__name__}: {error}) at {where}. "
                    "Set `on_bad_image: skip` to drop it."
                ) from None
            skipped.append(where)
    if skipped:
        logger.warning(
            "%s: skipped %d unreadable image(s) of %d sampled (on_bad_image: skip): %s",
            purpose, len(skipped), len(skipped) + len(opened), "; ".join(skipped[:5]),
        )  # fmt: skip
    if not opened:
        raise ValueError(f"{purpose}: no readable image in the {len(skipped)} sampled")
    return opened


def infer_color_mode(dataset_split, sample: int = 256, on_bad_image: str = "error") -> str:
    """`grayscale` when every sampled image has one colour channel (FER-2013's faces), else `rgb`."""
    modes = {mode for _, mode in _sampled_headers(dataset_split, sample, on_bad_image, "infer_color_mode")}
    return "grayscale" if modes and modes <= set(GRAYSCALE_PIL_MODES) else "rgb"


def infer_working_size(dataset_split, image_size: int, sample: int = 256, on_bad_image: str = "error") -> int:
    """Loader resolution: the 90th percentile of the images' long side in a sample, capped at
    ``image_size`` (CIFAR -> 32). Anything above the model's input would be thrown away on the device.
    Unreadable images follow `on_bad_image`, as in the loader."""
    headers = _sampled_headers(dataset_split, sample, on_bad_image, "infer_working_size")
    sides = [max(size) for size, _ in headers]
    return int(min(int(image_size), int(np.percentile(sides, 90))))
