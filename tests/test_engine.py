"""The training engine with a toy objective that is not supervised classification: minimising
a metric, early stopping, exact resume from a mid-epoch checkpoint, per-process seeds, the
one-cycle schedule, evaluation every N epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ecgfoundry.engine import Engine, StagePlan, StageSetup, StepOutput
from ecgfoundry.engine.engine import build_optimizer, build_schedule
from ecgfoundry.engine.run_dir import RunConfigError
from ecgfoundry.engine.seeding import SHUFFLE, epoch_rng, torch_seed
from ecgfoundry.models import create_model, list_models


class Interrupted(Exception):
    """Stands in for a kill at a given step."""


class Regression:
    """Denoising regression with dropout: every random draw the engine must reproduce."""

    def __init__(self, plan: StagePlan, *, stop_at_step: int | None = None,
                 scores: list[float] | None = None):  # fmt: skip
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        generator = np.random.default_rng(0)
        self.x = torch.from_numpy(generator.normal(size=(80, 4)).astype(np.float32))
        self.y = self.x.sum(1, keepdim=True)
        self.plan, self.stop_at_step, self.scores = plan, stop_at_step, scores
        self.steps = self.evaluations = 0

    def stages(self) -> list[StagePlan]:
        return [self.plan]

    def setup_stage(self, index: int) -> StageSetup:
        return StageSetup([{"params": list(self.model.parameters()), "lr": 1e-2}], 10,
                          distribute=self.model)  # fmt: skip

    def train_batches(self, index: int, epoch: int, skip: int) -> Any:
        order = torch.from_numpy(epoch_rng(0, index, epoch, SHUFFLE).permutation(80))
        for start in range(skip * 8, 80, 8):
            yield order[start : start + 8]

    def training_step(self, net: nn.Module, rows: torch.Tensor, index: int) -> StepOutput:
        self.steps += 1
        if self.steps == self.stop_at_step:
            raise Interrupted
        noisy = self.x[rows] + 0.1 * torch.randn(len(rows), 4)
        loss = nn.functional.mse_loss(net(noisy), self.y[rows])
        return StepOutput(loss, len(rows), {"twice": 2 * loss.item()})

    def evaluate(self, index: int) -> dict[str, float]:
        self.evaluations += 1
        if self.scores is not None:
            return {"val_loss": self.scores[self.evaluations - 1]}
        self.model.eval()
        with torch.no_grad():
            return {"val_loss": nn.functional.mse_loss(self.model(self.x), self.y).item()}


def snapshot_at_evaluations(objective: Regression) -> list[dict[str, torch.Tensor]]:
    """The weights at each evaluation, recorded as the engine runs."""
    snapshots: list[dict[str, torch.Tensor]] = []
    evaluate = objective.evaluate

    def remember(index: int) -> dict[str, float]:
        snapshots.append(weights(objective))
        return evaluate(index)

    objective.evaluate = remember
    return snapshots


PLAN = StagePlan("fit", epochs=3, optimizer="adamw", monitor="val_loss", mode="min")


def weights(objective: Regression) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in objective.model.state_dict().items()}


def test_a_run_killed_mid_epoch_resumes_to_identical_weights(tmp_path: Path) -> None:
    reference = Regression(PLAN)
    Engine(tmp_path / "a", progress_bar=False, precision="fp32").fit(reference)

    killed = Regression(PLAN, stop_at_step=15)  # epoch 2, batch 5 of 10
    engine = Engine(tmp_path / "b", progress_bar=False, precision="fp32", checkpoint_every_steps=3)
    with pytest.raises(Interrupted):
        engine.fit(killed)
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    # saved every 3 steps since the last save (the epoch end counts): steps 3, 6, 9, 10, 13
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 13)
    assert (tmp_path / "b/checkpoint/rng.safetensors").exists()

    resumed = Regression(PLAN)
    progress = Engine(tmp_path / "b", progress_bar=False, precision="fp32").fit(resumed)
    assert resumed.steps == 30 - 13  # only the batches not yet run
    a, b = weights(reference), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(h["train_twice"] == pytest.approx(2 * h["loss"]) for h in progress.history)
    assert [h["loss"] for h in progress.history] == pytest.approx(
        [h["loss"] for h in json.loads((tmp_path / "a/checkpoint/state.json").read_text())
         ["history"]], rel=1e-12)  # fmt: skip


def test_a_folder_holding_another_setups_checkpoint_is_refused(tmp_path: Path) -> None:
    first = Engine(tmp_path, seed=0, progress_bar=False, precision="fp32").fit(Regression(PLAN))
    again = Regression(PLAN)  # the same setup: nothing left to run, the same history
    progress = Engine(tmp_path, seed=0, progress_bar=False, precision="fp32").fit(again)
    assert again.steps == 0 and progress.history == first.history
    other = StagePlan("fit", epochs=4, optimizer="sgd", monitor="val_loss", mode="min")
    with pytest.raises(RunConfigError, match=r"differs in \['seed', 'stage 0 epochs', "
                                             r"'stage 0 optimizer'\]"):  # fmt: skip
        Engine(tmp_path, seed=7, progress_bar=False, precision="fp32").fit(Regression(other))
    state = tmp_path / "checkpoint" / "state.json"  # written before fingerprints were kept
    older = {k: v for k, v in json.loads(state.read_text()).items() if k != "fingerprint"}
    state.write_text(json.dumps(older))
    Engine(tmp_path, seed=0, progress_bar=False, precision="fp32").fit(Regression(PLAN))
    assert json.loads(state.read_text())["fingerprint"]["stages"][0]["epochs"] == 3


def test_early_stopping_on_a_metric_to_minimise_restores_the_best_epoch(tmp_path: Path) -> None:
    plan = StagePlan("fit", epochs=10, monitor="val_loss", mode="min", patience=2)
    objective = Regression(plan, scores=[3.0, 2.0, 2.5, 2.6, 1.0])
    snapshots = snapshot_at_evaluations(objective)
    progress = Engine(tmp_path, progress_bar=False).fit(objective)
    assert [h["epoch"] for h in progress.history] == [0, 1, 2, 3]  # stopped: 2 without gain
    assert [h["best"] for h in progress.history] == [True, True, False, False]
    now = weights(objective)
    assert all(torch.equal(now[k], snapshots[1][k]) for k in now)  # epoch 1's weights


def test_last_weights_and_evaluation_every_n_epochs(tmp_path: Path) -> None:
    plan = StagePlan("fit", epochs=5, monitor="val_loss", restore_best=False, eval_every=2)
    objective = Regression(plan, scores=[1.0, 2.0, 3.0])
    snapshots = snapshot_at_evaluations(objective)
    progress = Engine(tmp_path, progress_bar=False).fit(objective)
    assert ["val_loss" in h for h in progress.history] == [False, True, False, True, True]
    assert progress.history[1]["best"] and not progress.history[-1]["best"]
    now = weights(objective)
    assert all(torch.equal(now[k], snapshots[-1][k]) for k in now)  # the last, not the best
    assert not all(torch.equal(now[k], snapshots[0][k]) for k in now)


TWO_PROCESS_RUN = """
import sys
import torch
from safetensors.torch import save_file
sys.path.insert(0, "tests")
from test_engine import PLAN, Interrupted, Regression
from ecgfoundry.engine import Engine
from ecgfoundry.engine import distributed as dist

out, stop = sys.argv[1], int(sys.argv[2])
device = dist.setup()
objective = Regression(PLAN, stop_at_step=stop or None)
try:
    Engine(out, device=device, progress_bar=False, precision="fp32",
           checkpoint_every_steps=3).fit(objective)
except Interrupted:
    dist.cleanup()  # as the commands do
    dist.exit_process(3)
save_file(objective.model.state_dict(), f"{out}/rank{dist.rank()}.safetensors")
dist.cleanup()
dist.exit_process(0)
"""


@pytest.mark.parametrize("joined", [False, True])
def test_exit_process_flushes_and_keeps_the_status(joined: bool) -> None:
    """A process that took part in a multi-process run leaves without the interpreter's
    shutdown (atexit handlers do not run), its buffered output written; any other exits
    normally. Both keep the status."""
    script = (
        "import atexit, sys\n"
        "from ecgfoundry.engine import distributed as dist\n"
        f"dist._joined = {joined}\n"
        "atexit.register(lambda: print('shutdown ran'))\n"
        "sys.stdout.write('result'); sys.stderr.write('note')\n"
        "dist.exit_process(5)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 5, done.stderr
    assert done.stdout == ("result" if joined else "resultshutdown ran\n")
    assert done.stderr == "note"


def test_two_processes_resume_mid_epoch_with_their_own_generators(tmp_path: Path) -> None:
    """Each process draws its own dropout masks and noise; a two-process run killed mid-epoch
    resumes each process's generators, so it ends with the uninterrupted run's weights."""
    from conftest import torchrun, workers_output
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(TWO_PROCESS_RUN)

    def launch(out: Path, stop: int) -> None:
        """Run to the end (stop 0) or until step ``stop`` (the processes exit with 3)."""
        done = torchrun("--master_port", "29533", str(script), str(out), str(stop), timeout=300)
        assert done.returncode == (1 if stop else 0), workers_output(done.stderr)

    launch(tmp_path / "a", 0)
    launch(tmp_path / "b", 15)  # killed in epoch 2, after a save at step 13
    state = json.loads((tmp_path / "b/checkpoint/state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 3)
    saved = load_file(str(tmp_path / "b/checkpoint/rng.safetensors"))
    assert not torch.equal(saved["rank0.torch"], saved["rank1.torch"])
    launch(tmp_path / "b", 0)
    for rank in (0, 1):
        a = load_file(str(tmp_path / f"a/rank{rank}.safetensors"))
        b = load_file(str(tmp_path / f"b/rank{rank}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


SLOW_RUN = """
import sys, time
sys.path.insert(0, sys.argv[2])
from test_engine import PLAN, Regression
from ecgfoundry.engine import Engine

class Slow(Regression):
    def training_step(self, net, rows, index):
        time.sleep(0.1)  # time to be killed between steps
        return super().training_step(net, rows, index)

Engine(sys.argv[1], progress_bar=False, precision="fp32", checkpoint_every_steps=2).fit(Slow(PLAN))
"""


def test_a_run_killed_by_sigkill_mid_epoch_resumes_to_identical_weights(tmp_path: Path) -> None:
    """A real SIGKILL (no clean-up runs) between step checkpoints in epoch 2: the rerun
    resumes from the last step checkpoint and ends with the uninterrupted run's weights."""
    reference = Regression(PLAN)
    Engine(tmp_path / "a", progress_bar=False, precision="fp32").fit(reference)
    script = tmp_path / "run.py"
    script.write_text(SLOW_RUN)
    command = [sys.executable, str(script), str(tmp_path / "b"), str(Path(__file__).parent)]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    state_file = tmp_path / "b" / "checkpoint" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        try:  # the checkpoint folder is swapped atomically: it may be mid-swap
            saved = json.loads(state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        if saved.get("epoch") == 1 and saved["batch"] >= 4:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    state = json.loads(state_file.read_text())
    assert state["epoch"] == 1 and 4 <= state["batch"] < 10  # mid-epoch, from a step save
    resumed = Regression(PLAN)
    Engine(tmp_path / "b", progress_bar=False, precision="fp32").fit(resumed)
    assert resumed.steps == 30 - state["step"]
    a, b = weights(reference), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_each_process_draws_its_own_dropout_stream() -> None:
    seeds = {torch_seed(0, 1, 2, rank) for rank in range(4)}
    assert len(seeds) == 4
    legacy = int(np.random.default_rng([0, 1, 2, 2]).integers(2**62))
    assert torch_seed(0, 1, 2, 0) == legacy  # one process keeps the stream it always had


def test_one_cycle_follows_fastai() -> None:
    plan = StagePlan("fit", epochs=10, optimizer="adamw", schedule="one-cycle")
    optimizer = build_optimizer(plan, [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.01}])
    schedule = build_schedule(plan, optimizer, steps_per_epoch=10)
    lrs, beta1 = [], []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        beta1.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert max(lrs) == pytest.approx(0.01, rel=1e-3) and 28 <= int(np.argmax(lrs)) <= 30
    assert lrs[-1] < 0.01 / 25 / 1e3
    assert beta1[0] == pytest.approx(0.95) and min(beta1) == pytest.approx(0.85, abs=1e-3)


@pytest.mark.parametrize(
    "name", [row["name"] for row in list_models() if row["parameters"] < 5_000_000]
)
def test_models_declare_parameters_a_training_step_leaves_unused(name: str) -> None:
    """DDP searches for unused parameters only for models that declare them, so the
    declaration must be true: checked by a training step of every small preset."""
    model = create_model(name, num_classes=3).train()
    spec = model.spec
    model(torch.randn(2, len(spec.leads), spec.samples)).sum().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert model.has_unused_parameters == bool(unused), unused[:5]


CPU_FLAG_CASES = [
    ("avx2 avx512f avx512_vnni", None),
    ("avx2 avx512_bf16", torch.bfloat16),
    ("avx2 amx_bf16 amx_tile", torch.bfloat16),
]


@pytest.mark.parametrize(("flags", "expected"), CPU_FLAG_CASES)
def test_auto_precision_picks_bf16_only_where_the_cpu_flags_say_it_pays(
    flags: str, expected: torch.dtype | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecgfoundry.engine import precision

    monkeypatch.setattr(precision, "_cpuinfo", lambda: f"model name\t: x\nflags\t\t: {flags}\n")
    cpu = torch.device("cpu")
    assert precision.autocast_dtype("auto", cpu) == expected
    assert precision.bf16_pays_on_cpu(flags.split()) == (expected is not None)
    assert precision.autocast_dtype("fp32", cpu) is None
    assert precision.autocast_dtype("bf16", cpu) == torch.bfloat16


def test_a_process_that_does_not_write_the_claim_ignores_the_writers_temporary_file(
    tmp_path: Path,
) -> None:
    """Under torchrun the other ranks check while rank 0 writes config.json through a temporary
    file: seeing only that file must not refuse the folder (it made a 2-process run flaky)."""
    from ecgfoundry.engine.run_dir import RunConfigError, claim_run_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.json.tmp-1-abcd").write_text("{")
    claim_run_dir(out, {"seed": 0}, write=False)  # rank 1, mid-write: no verdict
    with pytest.raises(RunConfigError, match="not empty"):
        claim_run_dir(out, {"seed": 0}, write=True)  # the writer judges the folder
    (out / ".config.json.tmp-1-abcd").unlink()
    claim_run_dir(out, {"seed": 0}, write=True)
    claim_run_dir(out, {"seed": 0}, write=False)
    with pytest.raises(RunConfigError, match="different configuration"):
        claim_run_dir(out, {"seed": 1}, write=False)
