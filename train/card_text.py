"""Descriptions and limitations of the shipped detectors, written into their cards (tensors untouched, so the
SHA-256 in each card stays valid). Run by train/build_defaults.sh after training."""

import json
from pathlib import Path

text = {
 "gan-face": ("Per-face detector of GAN-generated faces: EfficientNet-Lite0 (ImageNet init) fine-tuned on FFHQ photos "
              "vs StyleGAN2 faces from thispersondoesnotexist.com, on 224 px face crops.",
              ["Knows one generator (StyleGAN2 via thispersondoesnotexist.com); diffusion models and other GANs are unseen.",
               "Small training set (309 real, 112 fake crops); thresholds come from a validation split of 86 crops.",
               "The source classes differ in compression history (FFHQ ~q75, fakes ~q95 before the shared q90 re-save): "
               "part of what it learned may be compression, not generation.",
               "Not a face-swap detector: swapped faces come from real photos."]),
 "sbi-frame": ("Per-face face-swap / blending detector: EfficientNet-Lite0 (ImageNet init) trained on real faces only "
               "against self-blended pseudo-fakes (Shiohara & Yamasaki 2022), on 160 px face crops. No real deepfake "
               "was in its training data.",
               ["Looks for blending boundaries and colour/sharpness mismatch inside the face: fully synthetic faces, "
                "talking-head generators that re-render the whole frame, and diffusion videos are largely invisible to it.",
                "Trained on about 1,170 real faces from roughly 50 identities (FFHQ and talking-face clips); "
                "pseudo-fake masks come from MTCNN's 5 landmarks, coarser than the 68/81-point masks of the paper.",
                "160 px input from a 256 px crop: fine blending artefacts of high-resolution swaps are partly lost."]),
 "sbi-temporal": ("Clip-level face-swap detector: the sbi-frame encoder (frozen) feeds an LSTM over 8 frames of a face "
                  "track (temporal LayerNorm, LeakyReLU head, dropout 0.4), trained on real clips vs temporally "
                  "consistent self-blended clips.",
                  ["Inherits sbi-frame's blind spots (whole-frame synthesis, diffusion, talking heads).",
                   "Trained on 54 real clips; tracks shorter than 8 faces are padded by repeating frames, so single "
                   "images get a degenerate sequence.",
                   "Its per-face score in the JSON is the track's score (one number per track)."]),
}
def main(weights: str = "weights") -> None:
    for n, (desc, lim) in text.items():
        p = Path(weights) / f"{n}.json"
        c = json.loads(p.read_text())
        c["description"], c["limitations"] = desc, lim
        c["license"] = ("weights: research and non-commercial use only "
                        "(derived from research-only training data; see training.terms)")
        p.write_text(json.dumps(c, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    main(*sys.argv[1:])
