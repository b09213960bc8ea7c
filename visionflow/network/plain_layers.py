"""A model configuration with the training-only layers swapped for the Keras layers they stand in for.

Training uses two subclasses of built-in layers that compute the same thing faster:
FusedBatchNormalization (visionflow/network/fused_batch_norm.py) and PatchGradientConv2D
(visionflow/network/patch_gradient_conv.py). Their configurations and weights are the built-in layers',
so the model rebuilt from the converted configuration predicts the same, and its saved file loads
in safe mode with nothing but Keras.
"""

from __future__ import annotations

from visionflow.network.fused_batch_norm import FUSED_CLASS_NAME
from visionflow.network.patch_gradient_conv import PATCH_GRADIENT_CLASS_NAME

# Each training-only layer's class name, and the name of the keras.layers class it stands in for.
BUILT_IN_EQUIVALENTS = {FUSED_CLASS_NAME: "BatchNormalization", PATCH_GRADIENT_CLASS_NAME: "Conv2D"}


def plain_layers_config(model_config: dict) -> dict:
    """A functional model's configuration with every training-only layer as its keras.layers equivalent."""
    if "layers" not in model_config:
        raise ValueError("plain_layers_config needs a functional model's configuration, with its 'layers'")
    converted = dict(model_config)
    converted["layers"] = [_plain_entry(entry) for entry in model_config["layers"]]
    return converted


def _plain_entry(entry: dict) -> dict:
    built_in = BUILT_IN_EQUIVALENTS.get(entry.get("class_name"))
    if built_in is None:
        return entry
    return {**entry, "module": "keras.layers", "class_name": built_in, "registered_name": None}
