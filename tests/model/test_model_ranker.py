"""DuiaRanker: variants, losses, the stop-gradient contract, determinism, files."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_model import train_ranker

from duia_spark.data.schema import SEGMENT_INDEX
from duia_spark.model.config import FUSIONS, SEGMENT_IDS, VARIANTS, ModelConfig
from duia_spark.model.ranker import DuiaRanker, build_ranker

# Variant ple reads no memory: the fusion changes nothing there.
VARIANT_FUSIONS = [(v, f) for v in VARIANTS for f in FUSIONS if v != "ple" or f == "input"]


@pytest.mark.parametrize(("variant", "fusion"), VARIANT_FUSIONS)
@pytest.mark.parametrize("hierarchical", [True, False])
def test_every_variant_trains_and_predicts(variant, fusion, hierarchical, make_config, make_batch):
    cfg = make_config(variant=variant, hierarchical=hierarchical, enhancement_fusion=fusion)
    model = build_ranker(cfg)
    train_ranker(model, make_batch, steps=7)  # crosses a dead-centre window (5 steps)
    b = make_batch(cfg, 32, seed=100, labels=False)
    out = model(b)
    assert out["logits"].shape == (32, len(cfg.tasks))
    p = model.predict(b)
    assert p.shape == (32, len(cfg.tasks)) and torch.all((p > 0) & (p < 1))
    metrics = model.cluster_metrics()
    if variant == "ple":
        assert metrics == {} and model.memories() == {}
    else:
        assert 0.0 <= metrics["user_usage_entropy"] <= 1.0
        assert metrics["user_dead_centres"] >= 0
        assert 0.0 <= metrics["uie_enhanced_share"] <= 1.0
    assert ("item_usage_entropy" in metrics) == (variant == "ple+duia")


def test_variant_switches_add_exactly_their_modules(make_config):
    expected_memories = {
        "ple": set(),
        "ple+uie": {"user"},
        "ple+uie+upbe": {"user", "upbe"},
        "ple+duia": {"user", "upbe", "item"},
    }
    m = make_config().memory_dim
    duia_width = {"ple": 0, "ple+uie": 2 * m + 1, "ple+uie+upbe": 3 * m + 2, "ple+duia": 3 * m + 2}
    base = DuiaRanker(make_config(variant="ple")).ple_input_dim
    for variant in VARIANTS:
        # Input fusion, concatenated as they are: the PLE input grows by their width.
        plain = DuiaRanker(
            make_config(variant=variant, enhancement_dim=0, enhancement_fusion="input")
        )
        assert set(plain.memories()) == expected_memories[variant]
        assert plain.ple_input_dim == base + duia_width[variant]
        assert (plain.uhse is not None) == (variant == "ple+duia")
        # Projected (default): the same vectors enter through one linear map.
        projected = DuiaRanker(
            make_config(variant=variant, enhancement_dim=8, enhancement_fusion="input")
        )
        # Residual fusion (default): the PLE input is variant ple's; the head reads them.
        residual = DuiaRanker(make_config(variant=variant, enhancement_dim=8))
        assert residual.ple_input_dim == base
        assert set(residual.memories()) == expected_memories[variant]
        if variant == "ple":
            assert projected.duia_proj is None and projected.ple_input_dim == base
            assert residual.residual is None
        else:
            assert projected.duia_proj.in_features == duia_width[variant]
            assert projected.ple_input_dim == base + 8
            assert residual.duia_proj.in_features == duia_width[variant]
            assert residual.residual is not None and projected.residual is None


def test_residual_fusion_trains_its_base_exactly_as_plain_ple(make_config, make_batch):
    # Without dropout: its masks come from the global random stream, which the memories
    # also draw from, so with it the two bases see the same data but other masks.
    cfg = make_config(variant="ple+duia", enhancement_fusion="residual", dropout=0.0)
    plain = build_ranker(make_config(variant="ple", dropout=0.0))
    model = build_ranker(cfg)
    assert model.ple_input_dim == plain.ple_input_dim
    base = plain.state_dict()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in base.items())
    b = make_batch(cfg, 32, seed=21, labels=False)
    # The head's last layer starts at zero: an untrained model serves the base's scores.
    torch.testing.assert_close(model.predict(b), plain.predict(b), rtol=0, atol=0)
    train_ranker(plain, make_batch, steps=4)
    train_ranker(model, make_batch, steps=4)
    for name, value in plain.state_dict().items():  # the memories did not move the base
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    out = model.eval()(b)
    torch.testing.assert_close(out["base_logits"], plain.eval()(b)["logits"], rtol=0, atol=0)
    assert out["residual"].abs().sum() > 0  # the head learnt a correction
    b = make_batch(cfg, 48, seed=0)  # a training batch: the head lowers its loss there
    _, parts = model.train().loss(b, model(b))
    assert parts["residual"] < parts["residual_base"]
    assert "residual" not in plain.loss(b, plain(b))[1]
    torch.testing.assert_close(out["logits"], out["base_logits"] + out["residual"])


def test_model_segment_ids_match_the_tables():
    assert SEGMENT_IDS == SEGMENT_INDEX


def test_config_rejects_a_fusion_it_does_not_have():
    for fusion in ("experts", "towers"):
        with pytest.raises(ValueError, match="model.enhancement_fusion: expected one of"):
            ModelConfig(enhancement_fusion=fusion)


def test_a_saved_config_with_a_retired_switch_on_is_refused_and_at_its_off_value_loads():
    saved = ModelConfig().to_dict()
    off = {"upbe_affinity": False, "enhanced_tasks": [], "enhancement_dropout": 0.5}
    assert ModelConfig.from_dict({**saved, **off}) == ModelConfig()  # training-only or off
    for retired in ({"upbe_affinity": True}, {"enhancement_fusion": "towers"}):
        with pytest.raises(ValueError, match=f"model.{next(iter(retired))}="):
            ModelConfig.from_dict({**saved, **retired})
    # Saved before enhancement_fusion existed: the vectors joined the PLE input.
    legacy = {k: v for k, v in saved.items() if k != "enhancement_fusion"}
    assert ModelConfig.from_dict(legacy).enhancement_fusion == "input"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_clustering_loss_leaves_main_model_gradients_untouched(fusion, make_config, make_batch):
    cfg = make_config(variant="ple+duia", enhancement_fusion=fusion)
    model = build_ranker(cfg)
    train_ranker(model, make_batch, steps=3)  # memories initialised, UPBE slots written
    model.eval()  # no bookkeeping between the passes: both see the same memories
    b = make_batch(cfg, 64, seed=7)
    centre_ids = {id(p) for p in model.centre_parameters()}
    main = {n: p for n, p in model.named_parameters() if id(p) not in centre_ids}

    def grads_of(loss_fn) -> dict:
        model.zero_grad(set_to_none=True)
        loss_fn(model(b)).backward()
        return {n: p.grad for n, p in main.items()}

    ranking_only = grads_of(lambda out: model.ranking_loss(b, out)[0])
    with_clustering = grads_of(lambda out: model.loss(b, out)[0])
    for name in main:
        assert ranking_only[name] is not None, name
        assert torch.equal(ranking_only[name], with_clustering[name]), name

    # The clustering loss alone sends nothing into the main model, only into centres.
    clustering_only = grads_of(lambda out: model.clustering_loss(b, out))
    assert all(grad is None for grad in clustering_only.values())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.centre_parameters())


def test_same_seed_same_model_same_training(make_config, make_batch):
    cfg = make_config(variant="ple+duia")
    a, b = build_ranker(cfg), build_ranker(cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    torch.manual_seed(7)  # dropout's masks: the global stream, seeded per training process
    train_ranker(a, make_batch, steps=6)
    torch.manual_seed(7)
    train_ranker(b, make_batch, steps=6)
    batch = make_batch(cfg, 40, seed=50)
    assert torch.equal(a.predict(batch), b.predict(batch))
    other = build_ranker(ModelConfig(**{**cfg.to_dict(), "seed": 1}))
    assert not torch.equal(other.item_emb.weight, a.item_emb.weight)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_training_resumes_exactly_from_a_checkpoint(fusion, make_config, make_batch):
    """Private random streams, caches and optimizer state all live in state dicts; dropout
    draws from the global stream, which the trainer's checkpoint saves beside them."""
    cfg = make_config(variant="ple+duia", enhancement_fusion=fusion)
    straight = build_ranker(cfg)
    opt = straight.build_optimizer(1e-2)

    def step(model, optimizer, seed):
        model.train()
        b = make_batch(cfg, 48, seed=seed)
        total, _ = model.loss(b, model(b))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        return total.item()

    for s in range(4):
        step(straight, opt, s)
    checkpoint = copy.deepcopy((straight.state_dict(), opt.state_dict()))
    rng = torch.get_rng_state()
    expected = [step(straight, opt, s) for s in range(4, 9)]  # crosses a window close

    resumed = build_ranker(cfg)
    resumed.load_state_dict(checkpoint[0])
    resumed_opt = resumed.build_optimizer(1e-2)
    resumed_opt.load_state_dict(checkpoint[1])
    torch.set_rng_state(rng)
    assert [step(resumed, resumed_opt, s) for s in range(4, 9)] == expected


@pytest.mark.parametrize("fusion", FUSIONS)
def test_saved_memory_loads_into_a_new_model_with_identical_outputs(
    fusion, tmp_path, make_config, make_batch
):
    cfg = make_config(variant="ple+duia", enhancement_fusion=fusion)
    trained = build_ranker(cfg)
    train_ranker(trained, make_batch, steps=6)
    path = tmp_path / "memory.safetensors"
    trained.save_memory(path)

    # Same weights + the memory from the file -> the very same predictions.
    restored = build_ranker(cfg)
    restored.load_state_dict(
        {
            k: v
            for k, v in trained.state_dict().items()
            if not k.startswith(("user_memory.", "item_memory.", "upbe."))
        },
        strict=False,
    )
    restored.uhse.leaf_cache.fill_(3)  # whatever it cached before, for other centres
    assert restored.load_memory(path) == ["user", "upbe", "item"]
    assert torch.all(restored.uhse.leaf_cache == -1)
    batch = make_batch(cfg, 40, seed=60)
    assert torch.equal(restored.predict(batch), trained.predict(batch))

    # Warm start: a fresh model of another variant takes the user memory only.
    warm = build_ranker(ModelConfig(**{**cfg.to_dict(), "variant": "ple+uie"}))
    assert warm.load_memory(path) == ["user"]
    assert torch.equal(warm.user_memory.centres1, trained.user_memory.centres1)
    assert bool(warm.user_memory.initialised)

    wrong = build_ranker(ModelConfig(**{**cfg.to_dict(), "k1": cfg.k1 + 1}))
    with pytest.raises(ValueError, match="shape"):
        wrong.load_memory(path)


def test_optimizer_gives_centres_their_own_sgd_group(make_config):
    cfg = make_config(variant="ple+duia", cluster_lr=0.3)
    model = DuiaRanker(cfg)
    opt = model.build_optimizer(1e-3)
    assert isinstance(opt, torch.optim.Optimizer)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["model"]["lr"] == 1e-3 and groups["model"]["algorithm"] == "adam"
    assert groups["centres"]["lr"] == 0.3 and groups["centres"]["algorithm"] == "sgd"
    centre_ids = {id(p) for p in groups["centres"]["params"]}
    assert id(model.user_memory.centres1) in centre_ids and id(model.upbe.slots) in centre_ids
    n_all = sum(1 for _ in model.parameters())
    assert len(groups["model"]["params"]) + len(centre_ids) == n_all


def test_sgd_group_moves_a_centre_two_rho_of_the_way_to_its_queries(make_config):
    model = DuiaRanker(make_config(variant="ple+uie", cluster_lr=0.25))
    opt = model.build_optimizer(1e-3)
    memory = model.user_memory
    q = torch.nn.functional.normalize(torch.randn(16, memory.dim), dim=1)
    r = memory.retrieve(q)
    before = memory.centres1.detach().clone()
    opt.zero_grad()
    memory.clustering_loss(q, r, torch.ones(16)).backward()
    opt.step()
    i = int(r.parent[0])
    target = q[r.parent == i].mean(0)
    torch.testing.assert_close(memory.centres1[i].detach(), before[i] + 0.5 * (target - before[i]))


def test_play_time_regression_and_missing_labels(make_config, make_batch):
    cfg = make_config(variant="ple", tasks=["click", "play_time"])
    model = DuiaRanker(cfg)
    b = make_batch(cfg, 32, seed=3)
    b["labels"][:, 1] = torch.rand(32) * 60.0
    b["labels"][:5, 0] = float("nan")  # click unknown for five rows
    total, parts = model.loss(b, model(b))
    assert torch.isfinite(total) and set(parts) == {"click", "play_time"}
    total.backward()
    play = model.predict(b)[:, 1]
    assert torch.all(play >= 0)


def test_play_time_is_learned_standardised_and_served_in_milliseconds(make_config, make_batch):
    cfg = make_config(variant="ple", tasks=["click", "play_time"])
    model = DuiaRanker(cfg)
    opt = model.build_optimizer(1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    first = None
    for step in range(60):
        b = make_batch(cfg, 64, seed=step)
        # Play times of 2 s to 60 s, in ms: log1p is about 9, as in a real feed log.
        b["labels"][:, 1] = torch.exp(torch.empty(64).uniform_(7.6, 11.0, generator=gen))
        total, parts = model.loss(b, model(b))
        first = float(parts["play_time"]) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    # Tracked like BatchNorm: the mean and spread of log1p(ms) ...
    assert 9.0 < float(model.target_mean[1]) < 9.6
    assert 0.8 < float(model.target_std[1]) < 1.2
    # ... so the head starts near the unit-variance loss, not at an MSE of about 85.
    assert first < 5.0
    # Served in label units (ms), within the range trained on.
    play = model.predict(b)[:, 1]
    assert torch.all((play > 1_000) & (play < 100_000)), play


def test_weights_saved_before_standardisation_load_and_score_as_they_did(make_config, make_batch):
    cfg = make_config(variant="ple", tasks=["click", "play_time"])
    model = DuiaRanker(cfg)
    b = make_batch(cfg, 16, seed=1)
    legacy = {k: v for k, v in model.state_dict().items() if not k.startswith("target_")}
    logits = model.eval()(b)["logits"]

    loaded = DuiaRanker(cfg)
    loaded.target_mean.fill_(5.0)  # whatever a fresh model holds, the legacy file wins
    loaded.load_weights(legacy)
    torch.testing.assert_close(loaded.predict(b)[:, 1], torch.expm1(logits[:, 1].clamp_min(0.0)))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        loaded.load_weights({**legacy, "not_a_weight": torch.zeros(1)})


def test_task_weights_scale_the_total(make_config, make_batch):
    b = make_batch(make_config(), 32, seed=4)
    plain = DuiaRanker(make_config(variant="ple"))
    heavy = DuiaRanker(make_config(variant="ple", task_weights={"click": 3.0}))
    torch.manual_seed(0)  # the same dropout masks in both forwards
    total_plain, parts = plain.loss(b, plain(b))
    torch.manual_seed(0)
    total_heavy, _ = heavy.loss(b, heavy(b))
    torch.testing.assert_close(total_heavy, total_plain + 2.0 * parts["click"])


def test_config_rejects_unknown_variant_and_bad_sizes():
    with pytest.raises(ValueError, match="variant"):
        ModelConfig(variant="ple+magic")
    with pytest.raises(ValueError, match="k1"):
        ModelConfig(k1=0)
