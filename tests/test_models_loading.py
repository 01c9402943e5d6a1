"""Architecture detection and strict loading: every mismatch is named."""

from __future__ import annotations

import pytest
import torch

from hdrmerge.errors import ArchitectureError
from hdrmerge.models import SAFNet, SAFNetS, build_model, detect_architecture, load_state_dict


def test_detect_architecture_of_real_checkpoints(safnet_s_state, random_safnet_state):
    assert detect_architecture(safnet_s_state) == "SAFNet-S"
    assert detect_architecture(random_safnet_state) == "SAFNet"


def test_parameter_counts_match_the_paper():
    # Spec section 7: 1.12 M and 0.57 M parameters.
    assert round(sum(p.numel() for p in SAFNet().parameters()) / 1e6, 2) == 1.12
    assert round(sum(p.numel() for p in SAFNetS().parameters()) / 1e6, 2) == 0.57


def test_exception_wrong_architecture_names_found_arch_and_keys(safnet_s_state):
    with pytest.raises(ArchitectureError) as err:
        load_state_dict(SAFNet(), safnet_s_state, source="SAFNet_S_siggraph17.pth")
    msg = str(err.value)
    assert msg.startswith("SAFNet_S_siggraph17.pth does not fit SAFNet (it looks like SAFNet-S): ")
    assert "missing refinenet.conv0.0.0.weight" in msg
    assert "unexpected refinenet.conv1.0.weight" in msg


def test_exception_missing_key(safnet_s_state):
    state = dict(safnet_s_state)
    del state["decoder.conv6.bias"]
    with pytest.raises(ArchitectureError, match=r"missing decoder\.conv6\.bias$"):
        load_state_dict(SAFNetS(), state)


def test_exception_extra_key(safnet_s_state):
    state = dict(safnet_s_state)
    state["refinenet.conv8.weight"] = torch.zeros(3)
    with pytest.raises(ArchitectureError, match=r"unexpected refinenet\.conv8\.weight$"):
        load_state_dict(SAFNetS(), state)


def test_exception_wrong_shape_quotes_both_shapes(safnet_s_state):
    state = dict(safnet_s_state)
    state["refinenet.conv7.weight"] = torch.zeros(3, 16, 3, 3)
    with pytest.raises(ArchitectureError) as err:
        load_state_dict(SAFNetS(), state)
    assert str(err.value).endswith("wrong shape refinenet.conv7.weight (3, 16, 3, 3) != (3, 32, 3, 3)")


def test_exception_not_a_safnet_state_dict():
    with pytest.raises(ArchitectureError, match=r"^not a SAFNet checkpoint \(keys start: fc\.bias, fc\.weight\)"):
        detect_architecture({"fc.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})


def test_module_prefix_from_data_parallel_is_accepted(safnet_s_state):
    prefixed = {f"module.{k}": v for k, v in safnet_s_state.items()}
    model = build_model(prefixed)
    assert model.arch == "SAFNet-S"
    assert torch.equal(model.refinenet.conv7.weight, safnet_s_state["refinenet.conv7.weight"])


def test_build_model_is_in_eval_mode(safnet_s_state):
    assert not build_model(safnet_s_state).training
