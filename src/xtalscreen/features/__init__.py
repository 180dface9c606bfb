"""Feature-based baselines (DiffraNet, paper 002): GLCM / LBP / SIFT-BoVW / raw-pixel features
with random forests, SVMs or any scikit-learn classifier, and an Optuna search over the paper's
Table 8 space.

- :mod:`.extractors` — image → feature vector functions and :func:`make_extractor`;
- :mod:`.baselines` — :class:`FeaturePipeline`, :func:`search`, :func:`evaluate`, save/load;
- :mod:`.datasets` — images and labels from ``xtalscreen simulate`` folders or class folders.
"""

from xtalscreen.features.extractors import (GLCM_PROPS, SiftBoVW, glcm_features, lbp_features,
                                            make_extractor, raw_features, to_uint8)

__all__ = ["GLCM_PROPS", "SiftBoVW", "glcm_features", "lbp_features", "make_extractor",
           "raw_features", "to_uint8"]
