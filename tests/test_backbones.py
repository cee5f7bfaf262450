import pytest
import torch
from tiny_models import family_configs
from transformers import AutoModelForImageClassification

from emoreg_hf.backbones import classify, feature_dim, pooled_features


@pytest.mark.parametrize("family", list(family_configs()))
def test_features_through_own_classifier_reproduce_own_logits(family):
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(family_configs()[family]).eval()
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        own = model(pixel_values=pixels).logits
        features = pooled_features(model, pixels)
        via_adapter = classify(model, features)
    assert features.shape == (3, feature_dim(model))
    assert (via_adapter - own).abs().max().item() <= 1e-5


def test_model_without_classifier_is_refused():
    from tiny_models import vit_config
    from transformers import ViTModel

    with pytest.raises(NotImplementedError, match="classifier"):
        feature_dim(ViTModel(vit_config()))
