"""Faint-spot salience after max-binning by 7 (the shipped 256 px input) and by 4 (512 px).

For crystal frames of ``scripts/compare_models.py``'s seed-785 set with 2-6 visible spots
(re-simulated from their seeds, so the true spot positions are known), each visible spot's
LCN value (max over its binned pixel and the 8 around it) is ranked among all pixels of the
network input: how many pixels are brighter, and how often the spot is among the 20 brightest.
Session 8 used it to test whether binning by 7 hides the faint spots that decide 3 against 4::

    .venv/bin/python scripts/bin_salience.py cspad
    .venv/bin/python scripts/bin_salience.py pilatus2m
"""
import sys
from pathlib import Path

import numpy as np

from xtalscreen.preprocess import PreprocessConfig, crop_origin
from xtalscreen.simulate.dataset import plan
from xtalscreen.simulate.engine import simulate_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_default_model as tdm  # noqa: E402

cfgs = tdm.training_configs("measured")
preset = sys.argv[1] if len(sys.argv) > 1 else "cspad"
items = [it for it in plan(6000, presets=tuple(cfgs), seed=785, split=(0, 0, 100)) if it["preset"] == preset and it["cls"] == "weak"]
res = {7: [], 4: []}
nf = 0
for it in items[:80]:
    frame, truth = simulate_frame(cfgs[preset], rng=np.random.SeedSequence([785, it["index"]]), frame_class=it["cls"])
    if not 2 <= truth.n_visible <= 6:
        continue
    nf += 1
    img, mask = frame.assembled()
    sp = truth.spots[truth.spots["visible"]]
    center = frame.beam_center_or_default()
    for b, cs in ((7, 256), (4, 512)):
        pp = PreprocessConfig(bin=b, bin_reduce="max", crop=(cs, cs), lcn_window=9)
        x = pp.apply_array(np.nan_to_num(img), mask=mask, center=center)[0]
        r0, c0 = crop_origin((center[0] / b, center[1] / b), (cs, cs))
        flat = np.sort(x.ravel())
        for s in sp:
            r, c = int(s["y"] // b) - r0, int(s["x"] // b) - c0
            if not (1 <= r < cs - 1 and 1 <= c < cs - 1):
                continue
            v = x[r - 1:r + 2, c - 1:c + 2].max()
            brighter = len(flat) - np.searchsorted(flat, v, side="left") - 1
            res[b].append((brighter, float(s["snr_measured"])))
print(preset, "frames with 2-6 visible spots:", nf)
for b in (7, 4):
    a = np.array(res[b])
    faint = a[a[:, 1] < 8]
    print(f"bin {b}: {len(a)} visible spots; pixels brighter than the spot: median {np.median(a[:,0]):.0f}; "
          f"spots among the 20 brightest pixels {np.mean(a[:,0] < 20):.2f}; "
          f"faint (SNR 5-8, {len(faint)}): median {np.median(faint[:,0]):.0f}, among 20 brightest {np.mean(faint[:,0] < 20):.2f}")
