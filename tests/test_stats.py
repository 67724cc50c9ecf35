"""The one ROC AUC: by hand, against the pairwise definition, and the scalar form the persona detector uses."""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.stats import auc, auroc


def test_auc_by_hand():
    pos = torch.tensor([[3.0], [2.0]])
    neg = torch.tensor([[1.0], [2.0]])
    # pairs: 3>1, 3>2, 2>1, 2=2 -> (3 + 0.5) / 4
    assert float(auc(pos, neg)[0]) == 0.875
    assert auroc([3.0, 2.0], [1.0, 2.0]) == 0.875


def test_auc_matches_pairwise_definition_with_ties():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 4, (9, 5), generator=gen).double()
    neg = torch.randint(0, 4, (7, 5), generator=gen).double()
    greater = (pos[:, None] > neg[None]).double().sum((0, 1))
    ties = (pos[:, None] == neg[None]).double().sum((0, 1))
    pairwise = (greater + 0.5 * ties) / (9 * 7)
    assert auc(pos, neg).dtype == torch.float64 and torch.equal(auc(pos, neg), pairwise)
    for col in range(5):  # the scalar form is the same number, column by column
        assert auroc(pos[:, col].tolist(), neg[:, col].tolist()) == float(pairwise[col])


def test_auroc_needs_both_classes():
    with pytest.raises(SteerlabError, match="at least one positive and one negative"):
        auroc([1.0], [])
