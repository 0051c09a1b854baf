"""benchmarks.sites, which the tuner and the breakdown time: one iteration's launch sites are
the trainer's 10 launches in order, each site's shape is exactly the key its launcher looks
its config up by (or a tuned table would never apply), and calling a site launches it again
into the trainer's buffers."""

import torch
from conftest import DEVICES

from benchmarks.sites import iteration_sites
from fastgan import kernels, model
from fastgan.batcher import Batcher
from fastgan.graph import GraphTrainer


def test_sites_are_the_iteration_and_their_shapes_are_the_lookup_keys(monkeypatch):
    device = DEVICES[0]  # gpu_check.sh runs this file on a GPU, where launchers refuse CPU tensors
    images = torch.rand(64, model.X_DIM, device=device)
    trainer = GraphTrainer([model.init_params(r, device) for r in range(2)], [1e-3, 2e-4],
                           [Batcher(images, 8, seed=r) for r in range(2)], 1, capture=False)
    looked_up = []
    lookup = kernels.configs.lookup

    def recording(kernel, device, M=0, N=0, K=0, mode=None):
        looked_up.append((kernel, M, N, K, mode))
        return lookup(kernel, device, M, N, K, mode)

    monkeypatch.setattr(kernels.configs, "lookup", recording)
    sites = iteration_sites(trainer)
    assert [s.kernel for s in sites] == ["linear_act_fwd"] * 3 + ["d_grad", "adam", "linear_act_fwd", "d_input_grad"] + [
        "linear_act_bwd"] * 2 + ["adam"]
    keys = [(s.kernel, *s.shape()) for s in sites]
    assert keys == looked_up  # one lookup per launch
    assert keys[2] == ("linear_act_fwd", 16, 128, 784, None) and keys[7][-1] == "dx+dw"
    assert keys[3] == ("d_grad", 16, 128, 784, None) and keys[6] == ("d_input_grad", 8, 128, 784, None)
    trainer.hG.zero_()
    sites[0]()  # G1's forward again (with the parameters as Adam left them), into the trainer's buffer
    again = trainer.hG.clone()
    trainer.hG.zero_()
    sites[0]()
    assert again.abs().sum() > 0 and torch.equal(trainer.hG, again)
