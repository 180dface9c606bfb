"""Test-time views: the dihedral orientations and the averaged logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xtalscreen.errors import ParameterError
from xtalscreen.models import create_model
from xtalscreen.models.tta import dihedral_tensor, view_logits
from xtalscreen.preprocess.views import VIEW_SETS, check_views, dihedral


def test_the_eight_views_are_the_distinct_dihedral_orientations():
    x = np.arange(12.0).reshape(3, 4)
    seen = {dihedral(x, v).tobytes() + bytes(dihedral(x, v).shape) for v in range(8)}
    assert len(seen) == 8
    assert np.array_equal(dihedral(x, 0), x) and np.array_equal(dihedral(x, 4), x[:, ::-1])
    assert np.array_equal(dihedral(x, 1), np.rot90(x))
    t = torch.from_numpy(x)[None, None]
    for v in range(8):  # the torch form is the same map
        assert np.array_equal(dihedral_tensor(t, v)[0, 0].numpy(), dihedral(x, v))


@pytest.mark.parametrize("bad", [0, 3, 16, 2.0, True, "8"])
def test_bad_view_counts_are_refused(bad):
    with pytest.raises(ParameterError, match="views must be one of 1, 2, 4, 8"):
        check_views(bad)
    with pytest.raises(ParameterError, match="view index"):
        dihedral(np.zeros((2, 2)), 8)


def test_eight_views_make_the_answer_independent_of_orientation():
    torch.manual_seed(0)
    m = create_model("spotcount", img_size=48).eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        one = [m(dihedral_tensor(x, v)) for v in range(8)]
        assert max(float((a - one[0]).abs().max()) for a in one) > 1e-4  # one view: it differs
        eight = [view_logits(m, dihedral_tensor(x, v), 8) for v in range(8)]
        for e in eight:
            torch.testing.assert_close(e, eight[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(view_logits(m, x, 2), (one[0] + one[2]) / 2, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(view_logits(m, x, 4), sum(one[:4]) / 4, atol=1e-6, rtol=1e-6)
        # a non-square input: the rotated views change shape; the model takes any size
        assert view_logits(m, torch.randn(2, 1, 40, 56), 8).shape == (2, 3)
    assert VIEW_SETS[2] == (0, 2) and len(VIEW_SETS[8]) == 8
