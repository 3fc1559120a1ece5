"""The video part of `vlmkern demo`: a procedural video made from scikit-image's
bundled photographs (no download), with the temporal redundancy of real footage
(holds, a pan, a zoom), run through Qwen2.5-VL's architecture with random
weights unpatched and with each video method.

The frames: a hold on the astronaut, a left-to-right pan across the coffee
cup, a zoom into the cat, a hold on the rocket (each a quarter of the video).
Held frames repeat exactly; panned and zoomed ones change a little per frame.
"""

from __future__ import annotations

import numpy as np
import torch

from vlmkern.demo import VEND_ID, VIDEO_ID, VSTART_ID

# name -> what vlmkern.apply receives (None: unpatched)
VIDEO_CONFIGS = ("unpatched", "pixel_dedup", "evs", "pixel_dedup+evs", "dycoke", "vidcom2", "fastvid")


def demo_video(frames: int = 32, side: int = 224) -> np.ndarray:
    """``[frames, side, side, 3]`` uint8: hold, pan, zoom, hold (a quarter each)."""
    from PIL import Image
    from skimage import data

    def fit(img, box=None):
        im = Image.fromarray(img)
        if box is not None:
            im = im.crop(box)
        return np.asarray(im.convert("RGB").resize((side, side), Image.BILINEAR))

    q = max(1, frames // 4)
    out = []
    astronaut = fit(data.astronaut())
    out += [astronaut] * q
    coffee = data.coffee()  # 400 x 600: pan a 400 x 400 window from left to right
    h, w = coffee.shape[:2]
    for i in range(q):
        x0 = round((w - h) * i / max(1, q - 1))
        out.append(fit(coffee, (x0, 0, x0 + h, h)))
    cat = data.chelsea()  # zoom into the centre, down to half the field of view
    h, w = cat.shape[:2]
    for i in range(q):
        s = 1.0 - 0.5 * i / max(1, q - 1)
        ch, cw = h * s, w * s
        out.append(fit(cat, (round((w - cw) / 2), round((h - ch) / 2), round((w + cw) / 2),
                             round((h + ch) / 2))))
    rocket = fit(data.rocket())
    out += [rocket] * (frames - 3 * q)
    return np.stack(out)


def qwen_video_inputs(video: np.ndarray, *, text_before: int = 12, text_after: int = 20, seed: int = 0):
    """Model inputs for one video (frames at their own size, two frames per
    temporal patch, 28x28 pixels per token after the 2x2 merge), between random
    text tokens (the random-weight model has no tokenizer)."""
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    T, H, W, _ = video.shape
    proc = Qwen2VLVideoProcessor(min_pixels=H * W, max_pixels=H * W)
    pix = proc(videos=[video], return_tensors="pt", do_sample_frames=False, cap_pixels_per_frame=False)
    grid = pix["video_grid_thw"]
    n_tokens = int(grid[0].prod()) // 4
    gen = torch.Generator().manual_seed(seed)
    pre = torch.randint(3, 30000, (text_before,), generator=gen).tolist()
    post = torch.randint(3, 30000, (text_after,), generator=gen).tolist()
    ids = torch.tensor([pre + [VSTART_ID] + [VIDEO_ID] * n_tokens + [VEND_ID] + post])
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": (ids == VIDEO_ID).to(torch.int32) * 2,
        "pixel_values_videos": pix["pixel_values_videos"],
        "video_grid_thw": grid,
    }


def video_methods(name: str, rate: float, rho: float, tol: float, keep_ratio: float):
    """What ``vlmkern.apply`` receives for a video configuration (None: unpatched)."""
    from vlmkern.methods import EVS, DyCoke, FastVID, PixelDedup, VidCom2

    return {"unpatched": None, "pixel_dedup": [PixelDedup(tol)], "evs": [EVS(rate)],
            "pixel_dedup+evs": [PixelDedup(tol), EVS(rate)], "dycoke": [DyCoke(rho)],
            "vidcom2": [VidCom2(keep_ratio)], "fastvid": [FastVID(keep_ratio)]}[name]
