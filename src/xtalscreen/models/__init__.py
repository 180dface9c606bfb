"""Models behind one registry (timm style).

>>> from xtalscreen.models import create_model, list_models
>>> list_models()
['c4_cnn', 'deepfreak', 'inception_v3', 'ke2018', 'li2018']
>>> m = create_model("ke2018")            # paper 001, 1 x 720 x 720 -> 3 classes
>>> m.num_features, m.default_cfg["input_size"]
(288, (1, 720, 720))

Every model has ``forward_features(x)`` (last feature maps) and ``forward_head(x, pre_logits=)``
(``pre_logits=True`` gives the embedding vector, e.g. for t-SNE), ``forward = head(features)``,
``default_cfg`` (input size, classes, the :class:`~xtalscreen.preprocess.PreprocessConfig`
dict it expects, the paper) and, once made by :func:`create_model`, ``model_name`` and
``model_kwargs`` so a checkpoint can rebuild it.

- ``ke2018``: paper 001 Fig. 2 (hit / maybe / miss, 288 features);
- ``li2018``: paper 003 Table I (hit / miss, 11,098 parameters);
- ``deepfreak``: paper 002's ResNet-50 with configurable topology (Tables 1, 9, 11);
- ``c4_cnn``: paper 000 Table 3 (drop images);
- ``inception_v3``: MARCO's Inception-v3 (drop images);
- ``spotcount``: detect-and-count hit screening (the shipped model);
- ``ensemble``: trained members' probabilities averaged (:mod:`xtalscreen.models.ensemble`).
"""

from xtalscreen.models._base import XtalModel, create_model, list_models, register_model
from xtalscreen.models import c4_cnn, deepfreak, ensemble, inception_v3, ke2018, li2018, spotcount  # noqa: F401  (register)

__all__ = ["XtalModel", "create_model", "list_models", "register_model"]
