"""SDNet, geometric channel tasks and learngene: shapes, export, statistics, selection."""

from __future__ import annotations

import math

import pytest
import torch
from torch.export import Dim, export

from mimoc.detectors.learngene import (
    CollectiveReport,
    L2Pull,
    Learngene,
    extract_learngene,
    gradient_significance,
    inherit,
    kendall_trend,
    load_learngene,
    measure_gradients,
    save_learngene,
    select_learngene,
    significance_from_magnitudes,
    task_system,
    train_collective,
    train_individual,
    transferred_ratio,
)
from mimoc.detectors.sdnet import SDNet, SDNetConfig
from mimoc.detectors.training import TrainOptions
from mimoc.errors import MimocError, ModelFileError, UsageError
from mimoc.sim.channels import CSIModel
from mimoc.sim.multipath import (
    HELD_OUT_TASKS,
    TRAINING_TASKS,
    FrozenChannel,
    GeometricChannel,
    angular_spectrum,
    channel_task,
    frozen_task,
    parse_task,
    receive_covariance,
)
from mimoc.sim.system import MIMOSystem


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def small_config(**kw):
    values = dict(nt=2, nr=4, modulation="qpsk", nconv=2, channels=4)
    values.update(kw)
    return SDNetConfig(**values)


# ----------------------------------------------------------------------------- SDNet

def test_forward_shapes_and_output_range(gen):
    torch.manual_seed(0)
    model = SDNet(small_config(modulation="16qam"))
    H = torch.randn(3, 8, 4, generator=gen)
    y = torch.randn(3, 5, 8, generator=gen)
    x_hat = model(H, y).detach()
    assert x_hat.shape == (3, 5, 4)
    top = float(model.constellation.levels.max())
    assert float(x_hat.abs().max()) <= top
    assert model.images(H, y).shape == (15, 1, 9, 4)


def test_image_rows_are_h_then_zero_forcing(gen):
    model = SDNet(small_config())
    H = torch.randn(2, 8, 4, dtype=torch.float64, generator=gen)
    y = torch.randn(2, 3, 8, dtype=torch.float64, generator=gen)
    images = model.images(H, y).reshape(2, 3, 9, 4)
    expected_zf = torch.linalg.lstsq(H[:, None].expand(-1, 3, -1, -1), y[..., None]).solution
    torch.testing.assert_close(images[:, :, -1], expected_zf[..., 0])
    torch.testing.assert_close(images[:, :, :-1], H[:, None].expand(-1, 3, -1, -1))
    # noiseless: ZF returns the transmitted vector exactly
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(SDNet.zero_forcing(H, x @ H.transpose(-1, -2)), x)


def test_gradients_reach_every_parameter(gen):
    model = SDNet(small_config())
    system = MIMOSystem(2, 4, "qpsk", csi=CSIModel.parse("ls:4@10"))
    model.training_loss(system.sample(8, 10.0, gen)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


def test_eval_mode_batchnorm_is_per_sample(gen):
    model = SDNet(small_config())
    system = MIMOSystem(2, 4, "qpsk")
    for _ in range(3):  # move the running statistics away from their initial values
        batch = system.sample(16, 10.0, gen)
        model.training_loss(batch)
    model.eval()
    batch = system.sample(6, 10.0, gen)
    full = model(batch.H_est, batch.y)
    alone = model(batch.H_est[:1], batch.y[:1])
    torch.testing.assert_close(full[:1], alone)
    assert all(float(n.running_var.sub(1).abs().max()) > 0 for n in model.norms)


def test_symbol_rows_band_grows_one_row_per_layer():
    model = SDNet(small_config())
    assert list(model.symbol_rows(0)) == [7, 8]
    assert list(model.symbol_rows(2)) == [5, 6, 7, 8]
    assert model.middle_layers == ["convs.1", "convs.2"]


def test_torch_export_dynamic_batch_and_slot(gen):
    model = SDNet(small_config()).eval()
    H = torch.randn(2, 8, 4, generator=gen)
    y = torch.randn(2, 3, 8, generator=gen)
    program = export(model, (H, y), dynamic_shapes={"H": {0: Dim("B")},
                                                   "y": {0: Dim("B"), 1: Dim("S")}})
    H2 = torch.randn(5, 8, 4, generator=gen)
    y2 = torch.randn(5, 7, 8, generator=gen)
    torch.testing.assert_close(program.module()(H2, y2), model(H2, y2))


def test_config_errors():
    with pytest.raises(UsageError, match="Nt <= Nr"):
        SDNet(SDNetConfig(nt=8, nr=4))
    with pytest.raises(UsageError, match="nconv"):
        SDNet(SDNetConfig(nconv=-1))


def test_parameter_count_matches_paper_table_iv():
    # the paper's individual model (Nconv = 8, 8 x 32): 21,627 trainable parameters
    model = SDNet(SDNetConfig(nt=8, nr=32, nconv=8))
    assert sum(p.numel() for p in model.parameters()) == 21_627
    collective = SDNet(SDNetConfig(nt=8, nr=32, nconv=12))
    assert sum(p.numel() for p in collective.parameters()) == 24_027


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = SDNet(small_config(nconv=1))
    options = TrainOptions(steps=60, batch=64, snr_db=(15.0, 15.0), csi="ls:4@15", lr=3e-3,
                           val_batch=0)
    channel = GeometricChannel(width_deg=30, spread_deg=8)
    probe = task_system(options, model.config, channel).sample(
        512, 15.0, torch.Generator().manual_seed(5))
    model.eval()
    with torch.no_grad():
        before = float(model.training_loss(probe))
    report = train_individual(model, channel, options)
    with torch.no_grad():
        after = float(model.training_loss(probe))
    assert report.steps == 60 and after < 0.7 * before


# ----------------------------------------------------------------------------- channel tasks

def test_tasks_have_unit_average_power(gen):
    for task_id in (*TRAINING_TASKS[:4], *HELD_OUT_TASKS[:2]):
        H = channel_task(task_id).sample(1500, 16, 4, gen)
        assert H.shape == (1500, 16, 4) and H.dtype == torch.complex64
        assert abs(float(H.abs().square().mean()) - 1.0) < 0.05, task_id


def test_tasks_differ_in_angular_spectrum_and_eigenvalue_spread(gen):
    narrow = GeometricChannel(center_deg=-30, width_deg=4, spread_deg=1, paths=3)
    wide = GeometricChannel(center_deg=40, width_deg=50, spread_deg=12, paths=16)
    angles = torch.linspace(-80, 80, 161)
    spectra, ranks = [], []
    for task in (narrow, wide):
        H = task.sample(2000, 16, 4, gen)
        spectra.append(angular_spectrum(H, angles))
        eig = torch.linalg.eigvalsh(receive_covariance(H)).clamp_min(0)
        ranks.append(float(eig.sum() ** 2 / eig.square().sum()))  # effective rank
    assert abs(float(angles[spectra[0].argmax()]) + 30) <= 3
    assert abs(float(angles[spectra[1].argmax()]) - 40) <= 15
    assert ranks[0] < 3 and ranks[1] > 3 * ranks[0]


def test_registry_is_deterministic_and_disjoint():
    assert channel_task(7) == channel_task(7)
    assert channel_task(7) != channel_task(8)
    assert not set(TRAINING_TASKS) & set(HELD_OUT_TASKS)
    assert parse_task("task:1001") == channel_task(1001)
    specs = {channel_task(k).spec for k in TRAINING_TASKS}
    assert len(specs) == len(TRAINING_TASKS)
    params = {(channel_task(k).width_deg, channel_task(k).paths) for k in TRAINING_TASKS}
    assert len(params) > 40
    with pytest.raises(UsageError, match="task:ID"):
        parse_task("task:x")


def test_geometric_channel_drives_a_mimo_system(gen):
    system = MIMOSystem(2, 8, "qpsk", channel_task(HELD_OUT_TASKS[0]),
                        CSIModel.parse("ls:4@20"))
    batch = system.sample(4, 10.0, gen)
    assert batch.H.shape == (4, 16, 4) and batch.H_est.shape == (4, 16, 4)


def test_frozen_task_repeats_one_typical_channel_of_the_task():
    frozen = frozen_task(HELD_OUT_TASKS[0])
    assert frozen.spec == f"task:{HELD_OUT_TASKS[0]}/frozen"
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    H = frozen.sample(5, 16, 4, gen, torch.complex128)
    assert torch.equal(gen.get_state(), state)  # nothing is drawn per slot
    assert all(torch.equal(H[0], h) for h in H)
    H[0].zero_()  # the caller owns the copy: the frozen channel stays as it was
    assert torch.equal(frozen.sample(1, 16, 4, dtype=torch.complex128)[0], H[1])
    # the median of the weakest singular values of the same candidate draws
    draws = channel_task(HELD_OUT_TASKS[0]).sample(
        frozen.candidates, 16, 4, torch.Generator().manual_seed(frozen.seed), torch.complex128)
    weakest = torch.linalg.svdvals(draws)[:, -1]
    assert torch.linalg.svdvals(H[1])[-1] == weakest.sort().values[frozen.candidates // 2]
    other = frozen_task(HELD_OUT_TASKS[0], seed=5).sample(1, 16, 4)
    assert not torch.equal(other[0], frozen.sample(1, 16, 4)[0])
    with pytest.raises(UsageError, match="candidate"):
        FrozenChannel(channel_task(0), candidates=0)


def test_los_only_channel_is_a_steering_vector(gen):
    los = GeometricChannel(center_deg=20, width_deg=0, spread_deg=0, paths=1,
                           k_factor_db=80.0)
    H = los.sample(3, 8, 2, gen, dtype=torch.complex128)
    ratio = H[:, 1:] / H[:, :-1]  # constant phase step 2 pi d sin(theta)
    expected = torch.polar(torch.tensor(1.0, dtype=torch.float64),
                           torch.tensor(math.pi * math.sin(math.radians(20)), dtype=torch.float64))
    torch.testing.assert_close(ratio, expected.expand_as(ratio), atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------- learngene

class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 2)   # 6 parameters
        self.b = torch.nn.Linear(3, 1)   # 4 parameters


def test_gradient_significance_counts_parameters_above_tau():
    model = TwoLayers()
    model.a.weight.grad = torch.tensor([[0.5, -0.2], [0.01, -0.05]])
    model.a.bias.grad = torch.tensor([0.3, 0.0])
    model.b.weight.grad = torch.tensor([[0.0, 0.0, 0.0]])
    model.b.bias.grad = torch.tensor([-1.0])
    rho = gradient_significance(model, ["a", "b"], tau=0.1)
    torch.testing.assert_close(rho, torch.tensor([3 / 6, 1 / 4], dtype=torch.float64))
    with pytest.raises(UsageError, match="no layer"):
        gradient_significance(model, ["c"], tau=0.1)


def test_kendall_trend_of_monotone_sequences():
    k = torch.arange(6, dtype=torch.float64)
    trend = kendall_trend(torch.stack([-k, k, torch.zeros(6)], dim=1))
    torch.testing.assert_close(trend, torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))


def synthetic_history(decreasing: set[int], n_tasks=10, n_layers=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(n_tasks, dtype=torch.float64)[:, None]
    noise = 0.02 * torch.randn(n_tasks, n_layers, generator=g, dtype=torch.float64)
    history = 0.5 + noise.expand(n_tasks, n_layers).clone()
    for layer in decreasing:
        history[:, layer] = 0.6 * torch.exp(-0.3 * k[:, 0]) + 0.01 * layer
    return history


def test_selection_picks_the_decreasing_block_with_lowest_late_significance():
    history = synthetic_history({1, 2, 3, 4})
    # layers 1..4 all decrease; the late values grow slightly with the index
    assert select_learngene(history, 2) == [1, 2]
    assert select_learngene(history, 4) == [1, 2, 3, 4]
    history = synthetic_history({3, 4})
    assert select_learngene(history, 2) == [3, 4]
    with pytest.raises(MimocError, match="keeps decreasing"):
        select_learngene(history, 3)
    # a layer that fluctuates does not count as decreasing
    history[:, 4] = torch.tensor([0.5, 0.1, 0.6, 0.05, 0.55, 0.1, 0.5, 0.1, 0.6, 0.1])
    with pytest.raises(MimocError):
        select_learngene(history, 2)


def make_learngene(source: SDNet, layers: list[str]) -> Learngene:
    weights = {f"{layer}.{n}": p.detach().clone() for layer in layers
               for n, p in source.get_submodule(layer).named_parameters()}
    return Learngene(layers, weights, source.config.to_dict(), source.middle_layers,
                     [[0.5] * source.config.nconv], 0.1)


def test_inheritance_copies_exactly_the_chosen_layers_at_the_bottom():
    torch.manual_seed(0)
    collective = SDNet(small_config(nconv=4))
    gene = make_learngene(collective, ["convs.3", "convs.4"])
    individual = SDNet(small_config(nconv=3))
    before = {k: v.clone() for k, v in individual.state_dict().items()}
    anchors = inherit(individual, gene)
    assert sorted(anchors) == ["convs.2.bias", "convs.2.weight", "convs.3.bias", "convs.3.weight"]
    after = individual.state_dict()
    for key, value in after.items():
        if key in anchors:
            source = key.replace("convs.3", "convs.4").replace("convs.2", "convs.3")
            assert torch.equal(value, collective.state_dict()[source]), key
        else:
            assert torch.equal(value, before[key]), key
    assert transferred_ratio(gene, individual) == pytest.approx(
        gene.n_params / sum(p.numel() for p in individual.parameters()))
    top = SDNet(small_config(nconv=3))
    assert sorted(inherit(top, gene, position="top"))[0] == "convs.1.bias"
    with pytest.raises(UsageError, match="nconv >= 2"):
        inherit(SDNet(small_config(nconv=1)), gene)
    with pytest.raises(UsageError, match="same number of channels"):
        inherit(SDNet(small_config(nconv=3, channels=5)), gene)


def test_l2_pull_is_zero_at_the_inherited_values_and_pulls_back():
    collective = SDNet(small_config(nconv=2))
    individual = SDNet(small_config(nconv=2))
    pull = L2Pull(inherit(individual, make_learngene(collective, ["convs.2"])), weight=0.5)
    assert pull(individual).item() == 0.0
    with torch.no_grad():
        individual.convs[2].weight.add_(0.1)
    n = individual.convs[2].weight.numel()
    assert pull(individual).item() == pytest.approx(0.5 * 0.5 * n * 0.01, rel=1e-5)
    pull(individual).backward()
    torch.testing.assert_close(individual.convs[2].weight.grad,
                               torch.full_like(individual.convs[2].weight, 0.5 * 0.1))
    assert individual.convs[1].weight.grad is None


def test_individual_training_inherits_and_pulls(gen):
    torch.manual_seed(0)
    collective = SDNet(small_config(nconv=3))
    gene = make_learngene(collective, ["convs.2", "convs.3"])
    options = TrainOptions(steps=10, batch=8, snr_db=(10.0, 10.0), csi="ls:4@10", val_batch=0,
                           lr_schedule="constant")
    held = SDNet(small_config(nconv=2))
    train_individual(held, channel_task(HELD_OUT_TASKS[0]), options, gene, pull=1e6)
    loose = SDNet(small_config(nconv=2))
    train_individual(loose, channel_task(HELD_OUT_TASKS[0]), options, gene, pull=0.0)
    drift = [(m.convs[2].weight - collective.convs[3].weight).abs().mean().item()
             for m in (held, loose)]
    assert drift[0] < 0.3 * drift[1]  # Adam bounds every step by ~lr, so the pull only halts
    pull = L2Pull({"convs.2.weight": collective.convs[3].weight}, 0.5)
    batch = task_system(options, held.config, channel_task(0)).sample(4, 10.0, gen)
    held.eval()
    torch.testing.assert_close(pull.loss(held, batch), held.training_loss(batch) + pull(held))


def test_learngene_round_trip_and_refusal(tmp_path):
    gene = make_learngene(SDNet(small_config()), ["convs.2"])
    gene.gradients = torch.rand(3, 2, 148)
    path = save_learngene(gene, tmp_path / "gene.pt")
    loaded = load_learngene(path)
    assert loaded.layers == gene.layers and loaded.tau == gene.tau
    assert torch.equal(loaded.gradients, gene.gradients)
    for key, value in gene.weights.items():
        assert torch.equal(loaded.weights[key], value)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a mimoc learngene"):
        load_learngene(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="not a readable learngene"):
        load_learngene(tmp_path / "junk.pt")
    data = bytearray(path.read_bytes())  # flipped bytes in the gradients: a stale zip CRC
    at = data.find(gene.gradients.numpy().tobytes()[:64])
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    (tmp_path / "damaged.pt").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_learngene(tmp_path / "damaged.pt")


def test_collective_training_records_significance_and_extracts(gen):
    torch.manual_seed(0)
    model = SDNet(small_config(nconv=3))
    options = TrainOptions(steps=3, batch=16, snr_db=(10.0, 20.0), csi="ls:4@15")
    tasks = [channel_task(k) for k in range(3)]
    report = train_collective(model, tasks, options, measure_batch=32)
    assert report.layers == ["convs.1", "convs.2", "convs.3"]
    assert report.magnitudes.shape == (3, 3, 4 * 4 * 9 + 4)
    assert report.tau == pytest.approx(float(report.magnitudes.median()))
    assert "mean_gradient" in report.to_dict() and "magnitudes" not in report.to_dict()
    assert len(report.significance) == 3 and all(len(r) == 3 for r in report.significance)
    assert all(0.0 <= r <= 1.0 for row in report.significance for r in row)
    assert report.tasks == ["task:0", "task:1", "task:2"]
    # a history that decreases at the bottom makes extraction copy those layers
    fake = CollectiveReport(report.layers, report.tasks,
                            [[0.5, 0.6, 0.5], [0.5, 0.4, 0.3], [0.5, 0.2, 0.1]],
                            report.losses, report.tau, report.seconds)
    gene = extract_learngene(model, fake, n_layers=2)
    assert gene.layers == ["convs.2", "convs.3"]
    assert torch.equal(gene.weights["convs.3.weight"], model.convs[3].weight)


def test_measured_gradients_give_significance(gen):
    model = SDNet(small_config(nconv=2))
    system = task_system(TrainOptions(csi="ls:4@15"), model.config, channel_task(0))
    magnitudes = measure_gradients(model, system, (10.0, 10.0), gen, 64)
    assert magnitudes.shape == (2, 4 * 4 * 9 + 4)
    assert float(magnitudes.min()) >= 0 and float(magnitudes.max()) > 0
    assert all(p.grad is None for p in model.parameters())  # left clean
    tau = float(magnitudes.median())
    rho = significance_from_magnitudes(magnitudes, tau)
    assert 0.3 < float(rho.mean()) < 0.7
    assert float(significance_from_magnitudes(magnitudes, 1e9).sum()) == 0.0
    # the same as counting on the .grad tensors
    model.zero_grad()
    for layer, row in zip(model.middle_layers, magnitudes, strict=True):
        conv = model.get_submodule(layer)
        conv.weight.grad = row[:conv.weight.numel()].reshape(conv.weight.shape).clone()
        conv.bias.grad = row[conv.weight.numel():].clone()
    torch.testing.assert_close(gradient_significance(model, model.middle_layers, tau), rho)
