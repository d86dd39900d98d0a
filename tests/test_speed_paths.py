"""The speed paths: bf16 autocast, torch.compile, the lean training step, light start-up, one data copy.

No timing is asserted here (benchmarks/bench_speed.py measures speed); these tests check that the
fast paths run and compute what the plain ones do.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dlrun.config import config_dir, register_configs
from dlrun.training.data import Split, load_dataset
from dlrun.training.models import build_model
from dlrun.training.optim import build_optimizer
from dlrun.training.steps import StepSettings, evaluate
from tests.helpers import QUICK, make_mnist, train_epoch

CPU = torch.device("cpu")


def tiny_split(n: int = 10, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))


def output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Record the dtype of every Linear and Conv2d output during the forward passes that follow."""
    seen: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
@pytest.mark.parametrize("precision, expected", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_matmul_dtype_and_a_step_learns(model_name, precision, expected):
    data = tiny_split(32)
    torch.manual_seed(0)
    model = build_model(model_name, (1, 8, 8), 10, **({"channels": [4]} if model_name == "cnn" else {"hidden_sizes": [16]}))
    dtypes = output_dtypes(model)
    optimizer = build_optimizer("adam", model, lr=0.01)
    settings = StepSettings(8, F.cross_entropy, precision=precision)
    first = train_epoch(model, optimizer, data, settings, torch.Generator().manual_seed(0))
    for _ in range(5):
        last = train_epoch(model, optimizer, data, settings, torch.Generator().manual_seed(0))
    scores = evaluate(model, data, StepSettings(16, F.cross_entropy, shuffle=False, precision=precision))
    assert set(dtypes) == {expected}
    assert last["loss"] < first["loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never changes the weights
    assert 0.0 <= scores["acc"] <= 1.0 and torch.isfinite(torch.tensor(scores["loss"]))


def test_epoch_metrics_weigh_a_short_last_batch_as_evaluate_does():
    """With the weights frozen (lr 0) and no shuffling, training sees exactly what evaluation sees."""
    data = tiny_split(10)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train = train_epoch(model, optimizer, data, StepSettings(4, F.cross_entropy, shuffle=False), torch.Generator())
    scores = evaluate(model, data, StepSettings(4, F.cross_entropy, shuffle=False))
    assert train["examples"] == 10
    assert train["loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert train["acc"] == scores["acc"]


def test_accuracy_counts_the_shuffled_labels_it_trained_on():
    data = tiny_split(50)
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train = train_epoch(model, optimizer, data, StepSettings(16, F.cross_entropy), torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = (model(data.x).argmax(dim=1) == data.y).float().mean().item()
    assert train["acc"] == pytest.approx(expected)


def test_subnormals_are_flushed_while_training_and_not_after():
    tiny = torch.tensor([1e-39])  # subnormal in float32
    seen: list[float] = []
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    model.register_forward_hook(lambda *_: seen.append((tiny * 1.0).item()))
    optimizer = build_optimizer("sgd", model, lr=0.1)
    train_epoch(model, optimizer, tiny_split(8), StepSettings(8, F.cross_entropy), torch.Generator())
    assert seen == [0.0]
    assert (tiny * 1.0).item() != 0.0


DENORMALS_ON_TWO_THREADS = """
import sys, numpy as np, torch
from dlrun.training.device import flush_denormals_everywhere
torch.set_num_threads(2)
x = torch.from_numpy(np.full(1 << 20, 1e-39, dtype=np.float32))  # subnormal, made without torch's threads
if sys.argv[1] == "late":
    torch.ones(1 << 20).sum()  # torch starts its worker thread here
flush_denormals_everywhere()
print(int(((x * 1.0) != 0).sum()))  # half of this runs on the worker thread
"""


def test_subnormals_are_flushed_on_torchs_worker_threads_too():
    def nonzero(when: str) -> int:
        done = subprocess.run([sys.executable, "-c", DENORMALS_ON_TWO_THREADS, when], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert nonzero("first") == 0  # as dlrun calls it: before torch's first parallel operation
    assert nonzero("late") > 0  # set after the workers exist, the flag misses them


def test_a_run_sets_the_flag_before_it_touches_any_data(run_dlrun, monkeypatch):
    import dlrun.training.recipe

    calls: list[str] = []
    for name in ("flush_denormals_everywhere", "load_dataset"):
        real = getattr(dlrun.training.recipe, name)
        monkeypatch.setattr(dlrun.training.recipe, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    run_dlrun(*QUICK, "debug=fast")
    assert calls == ["flush_denormals_everywhere", "load_dataset"]


def test_one_fused_group_without_weight_decay_and_two_with_it():
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[16])
    assert len(build_optimizer("adam", model, lr=0.01).param_groups) == 1
    assert [g["weight_decay"] for g in build_optimizer("adam", model, lr=0.01, weight_decay=0.1).param_groups] == [0.1, 0.0]


def float_tensors_at_least(numel: int) -> list[torch.Tensor]:
    gc.collect()
    return [t for t in gc.get_objects() if issubclass(type(t), torch.Tensor) and t.is_floating_point() and t.numel() >= numel]


def test_mnist_is_held_in_one_float_copy(tmp_path):
    root = make_mnist(tmp_path, n_train=300, n_test=100)
    data = load_dataset("mnist", root=root, device=CPU, val_fraction=0.1)
    smallest = min(len(data.val), len(data.test)) * 12 * 12
    held = {t.untyped_storage().data_ptr() for t in float_tensors_at_least(smallest)}
    assert held == {s.x.untyped_storage().data_ptr() for s in (data.train, data.val, data.test)}
    sizes = sum(s.x.untyped_storage().nbytes() for s in (data.train, data.val, data.test))
    assert sizes == 400 * 12 * 12 * 4  # each image once, as float32


@pytest.mark.slow
def test_compile_option_trains_through_the_real_cli(run_dlrun):
    folder = run_dlrun(*QUICK, "debug=fast", "trainer.compile=true", "trainer.precision=bf16", "device=cpu")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["config"]["trainer"]["compile"] is True


HEAVY = "{'torch', 'torchvision', 'sklearn'}"


def heavy_imports(code: str, cwd) -> list[str]:
    """Run `code` in a fresh interpreter (in `cwd`) and list the heavy packages it imported."""
    script = f"import sys\n{code}\nprint(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY}), file=sys.__stderr__)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd)
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--cfg", "job"], ["--cfg", "job", "experiment=mnist_speedrun"], ["compare", "--help"]],
    ids=["help", "cfg-job", "cfg-job-speedrun", "compare-help"],
)
def test_cli_without_a_run_imports_no_heavy_package(argv, tmp_path):
    code = f"from dlrun.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert heavy_imports(code, tmp_path) == []


def test_a_default_run_imports_neither_dynamo_nor_scikit_learn_nor_matplotlib(tmp_path):
    """torch._dynamo is for trainer.compile, scikit-learn only ships the digits' file, and the plot
    helpers draw the pictures: a plain run on the digits, with its plots, checkpoints and test
    pass, imports none of them in its own process."""
    argv = ["trainer.epochs=2", "trainer.progress=off", f"hydra.run.dir={tmp_path / 'run'}"]
    code = (f"from dlrun.cli import main\nassert main({argv!r}) == 0\n"
            "print(sorted(m for m in ('torch._dynamo', 'sklearn', 'matplotlib') if m in sys.modules), file=sys.__stderr__)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", f"import sys\n{code}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == ["confusion_matrix.png", "curves.png", "samples.png"]


def test_the_check_itself_sees_torch(tmp_path):
    assert heavy_imports("import torch", tmp_path) == ["torch"]


def test_a_non_finite_loss_names_its_step():
    from dlrun.training.steps import Diverged, _check_finite

    losses = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(float("inf")), torch.tensor(float("nan"))]
    _check_finite(losses[:2], 0, 10)  # finite: no error
    with pytest.raises(Diverged, match=r"became inf at step 3 of 10"):
        _check_finite(losses, 1, 10)


def test_parallel_jobs_take_one_gpu_each():
    from dlrun.training.device import job_device

    cuda = torch.device("cuda")
    assert [job_device(cuda, slot, 4) for slot in range(6)] == [torch.device("cuda", i) for i in (0, 1, 2, 3, 0, 1)]
    assert job_device(cuda, 3, 1) == cuda  # one GPU: every job on it
    assert job_device(torch.device("cpu"), 3, 4) == torch.device("cpu")
    assert job_device(torch.device("cuda", 2), 3, 4) == torch.device("cuda", 2)  # a GPU named on purpose stays
    assert job_device(cuda, None, 4) == cuda  # not a parallel job


GLOBAL_CONFIGS = sorted(  # the only files that can set hydra.*: config.yaml and those in the _global_ package
    path.relative_to(config_dir()) for path in config_dir().rglob("*.yaml") if "@package _global_" in path.read_text().splitlines()[0]
)


@pytest.mark.parametrize("path", [None, *GLOBAL_CONFIGS], ids=str)
def test_no_config_of_dlrun_sets_hydra_mode(path):
    """What lets `dlrun` skip Hydra's mode probe (cli.mode_probe_skipped)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    overrides = [] if path is None else [f"{path.parent}={path.stem}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.mode is None


@pytest.fixture
def compositions(monkeypatch) -> list[str]:
    """The run modes of every whole-config composition Hydra makes from here on."""
    from hydra._internal.hydra import Hydra

    seen: list[str] = []
    compose_config = Hydra.compose_config

    def counted(self, *args, **kwargs):
        seen.append(kwargs.get("run_mode", args[2] if len(args) > 2 else None).name)
        return compose_config(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", counted)
    return seen


QUICK_RUN = ("trainer.epochs=1", "trainer.plots=false")


def test_a_command_of_overrides_composes_its_config_once(run_dlrun, compositions):
    folder = run_dlrun(*QUICK_RUN)
    assert compositions == ["RUN"]
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert "hydra.mode=RUN" in (folder / ".hydra" / "hydra.yaml").read_text()  # as Hydra records it when it probes


def test_a_command_that_may_set_the_mode_is_probed_first(run_dlrun, compositions):
    run_dlrun(*QUICK_RUN, "hydra.mode=RUN")
    assert compositions == ["MULTIRUN", "RUN"]  # Hydra's probe, then the run


def test_without_hydras_probe_a_run_composes_twice_with_one_warning(run_dlrun, compositions, monkeypatch):
    from hydra._internal.hydra import Hydra

    probe = Hydra.get_mode
    monkeypatch.setattr(Hydra, "get_mode", lambda self, config_name, overrides, *more: probe(self, config_name, overrides))
    with pytest.warns(UserWarning, match="composes its config twice"):
        folder = run_dlrun(*QUICK_RUN)
    assert compositions == ["MULTIRUN", "RUN"]
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


FAULTS_SCRIPT = """
import ctypes, resource, sys, torch
from dlrun.training.device import keep_freed_memory

# glibc's starting thresholds (128 KiB), fixed: how much a process has freed before moves them, so
# they are pinned here to make every large block come from the kernel and go back to it
libc = ctypes.CDLL("libc.so.6")
assert libc.mallopt(-3, 128 * 1024) == 1 and libc.mallopt(-1, 128 * 1024) == 1

def faults():  # minor page faults while a step-like pattern allocates, touches and frees 3 x 6.4 MB ten times
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        blocks = [torch.empty(1_600_000).fill_(1.0) for _ in range(3)]
        del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
default = faults()
kept = keep_freed_memory()
faults()  # the heap grows once to hold the blocks
print(default, kept, faults(), file=sys.__stderr__)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_freed_memory_is_kept_for_the_next_step_without_page_faults():
    """The process's own behaviour (glibc's malloc settings), so a fresh process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    default, kept, after = done.stderr.strip().splitlines()[-1].split()
    assert kept == "True"
    assert int(default) > 10_000  # 3 x 1,563 pages faulted in anew ten times
    assert int(after) < 100


def test_elsewhere_than_glibc_the_allocator_is_left_alone(monkeypatch):
    import ctypes
    import platform

    from dlrun.training import device

    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("mallopt must not be called"))
    device.keep_freed_memory.cache_clear()  # asked afresh, as a new process would
    try:
        assert device.keep_freed_memory() is False
    finally:
        device.keep_freed_memory.cache_clear()
