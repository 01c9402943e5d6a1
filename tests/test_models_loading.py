"""Architecture detection and strict loading: every mismatch is named."""

from __future__ import annotations

import pytest
import torch

from hdrmerge.errors import ArchitectureError
from hdrmerge.models import AFUNet, SAFNet, SAFNetS, build_model, detect_architecture, load_state_dict
from hdrmerge.weights.store import read_pth


def test_detect_architecture_of_real_checkpoints(safnet_s_state, random_safnet_state, random_afunet_state):
    assert detect_architecture(safnet_s_state) == "SAFNet-S"
    assert detect_architecture(random_safnet_state) == "SAFNet"
    assert detect_architecture(random_afunet_state) == "AFUNet"
    assert detect_architecture({k.removeprefix("module."): v for k, v in random_afunet_state.items()}) == "AFUNet"


def test_parameter_counts_match_the_paper():
    # Spec section 7: 1.12 M and 0.57 M parameters.
    assert round(sum(p.numel() for p in SAFNet().parameters()) / 1e6, 2) == 1.12
    assert round(sum(p.numel() for p in SAFNetS().parameters()) / 1e6, 2) == 0.57
    # AFUNet spec section 9: 1,162,035 parameters and 534 state-dict entries.
    assert sum(p.numel() for p in AFUNet().parameters()) == 1_162_035
    assert len(AFUNet().state_dict()) == 534


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
    with pytest.raises(ArchitectureError, match=r"^not a SAFNet or AFUNet checkpoint \(keys start: fc\.bias, fc\.weight\)"):
        detect_architecture({"fc.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})


def test_module_prefix_from_data_parallel_is_accepted(safnet_s_state):
    prefixed = {f"module.{k}": v for k, v in safnet_s_state.items()}
    model = build_model(prefixed)
    assert model.arch == "SAFNet-S"
    assert torch.equal(model.refinenet.conv7.weight, safnet_s_state["refinenet.conv7.weight"])


def test_build_model_is_in_eval_mode(safnet_s_state):
    assert not build_model(safnet_s_state).training


def test_authors_afunet_pth_format_loads_strictly(random_afunet_state, tmp_path):
    # train.py saves {'epoch', 'state_dict', 'optimizer', 'lr_scheduler'} from a
    # DataParallel model: every key starts with "module.". read_pth uses weights_only=True.
    assert all(k.startswith("module.") for k in random_afunet_state)
    path = tmp_path / "Kalantari.pth"
    torch.save({"epoch": 7, "state_dict": random_afunet_state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
                "lr_scheduler": {"last_epoch": 7}}, path)
    model = build_model(read_pth(path), source=path.name)
    assert isinstance(model, AFUNet) and not model.training
    assert torch.equal(model.SFM[3].conv.weight, random_afunet_state["module.SFM.3.conv.weight"])
    assert torch.equal(model.beta2[1], random_afunet_state["module.beta2.1"])


def test_exception_afunet_checkpoint_into_safnet_names_arch_and_keys(random_afunet_state):
    with pytest.raises(ArchitectureError) as err:
        load_state_dict(SAFNet(), random_afunet_state, source="Kalantari.pth")
    msg = str(err.value)
    assert msg.startswith("Kalantari.pth does not fit SAFNet (it looks like AFUNet): missing encoder.")
    unexpected = msg.split("; unexpected ")[1]
    assert unexpected.endswith(f"(+{534 - 6} more)")
    named = unexpected.split(" (+")[0].split(", ")
    assert len(named) == 6 and all(k.split(".")[0] in AFUNet()._modules for k in named)


def test_exception_safnet_checkpoint_into_afunet_names_arch_and_keys(safnet_s_state):
    with pytest.raises(ArchitectureError) as err:
        load_state_dict(AFUNet(), safnet_s_state, source="SAFNet_S_siggraph17.pth")
    msg = str(err.value)
    assert msg.startswith("SAFNet_S_siggraph17.pth does not fit AFUNet (it looks like SAFNet-S): missing conv1.0.weight, conv1.0.bias, ")
    assert "; unexpected encoder.pyramid1.0.0.weight, " in msg


def test_exception_afunet_missing_and_misshapen_keys(random_afunet_state):
    state = dict(random_afunet_state)
    del state["module.beta1.3"]
    state["module.out.0.weight"] = torch.zeros(3, 72, 3, 3)
    with pytest.raises(ArchitectureError) as err:
        load_state_dict(AFUNet(), state)
    assert str(err.value) == (
        "checkpoint does not fit AFUNet (it looks like AFUNet): missing beta1.3; "
        "wrong shape out.0.weight (3, 72, 3, 3) != (3, 24, 3, 3)"
    )


def test_exception_afunet_damaged_position_index_is_named(random_afunet_state):
    state = dict(random_afunet_state)
    key = "module.SFM.2.residual_group.blocks.4.attn.relative_position_index"
    state[key] = state[key].t().contiguous()  # the offset's sign flipped
    with pytest.raises(ArchitectureError) as err:
        build_model(state, source="Hu.pth")
    assert str(err.value) == (
        "Hu.pth does not fit AFUNet: buffers differ from the ones the architecture defines: "
        "SFM.2.residual_group.blocks.4.attn.relative_position_index; the file is damaged"
    )


def test_exception_mixed_safnet_and_afunet_keys(random_afunet_state, safnet_s_state):
    mixed = {k.removeprefix("module."): v for k, v in random_afunet_state.items()} | dict(safnet_s_state)
    with pytest.raises(ArchitectureError, match=r"^the checkpoint mixes SAFNet keys \(decoder\..*\) and AFUNet keys \(SFM\."):
        detect_architecture(mixed)
