"""The fault suite (docs/reliability.md): preemption, divergence, shared folders, crash leftovers,
malicious files, literal messages. Each test names the promise it holds."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from test_pretrain import _config, cli_sets, run_cli, step_losses

from vdiag.checkpoint import check_recorded_data, dataset_fingerprint, load_checkpoint, non_finite_tensors, save_checkpoint
from vdiag.data.formats import load_index
from vdiag.errors import ExitCode, VdiagError
from vdiag.io import LOCK_NAME, folder_lock, remove_stale_temporaries
from vdiag.train.trainer import pretrain


def epoch_summaries(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records if r["type"] == "epoch"]


def _wait_for_steps(log, steps, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count('"type": "step"') >= steps:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {steps} steps (exit {proc.poll()})")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1"])
def test_preemption_saves_at_the_next_step_and_resume_auto_repeats_the_uninterrupted_run(sig, tiny_synth, tmp_path):
    """SIGTERM / SIGUSR1 to a real `vdiag pretrain` mid-epoch (loader workers running): the position is
    saved, the exit code is 75, the message prints once, and `--resume auto` (the same command) ends
    with per-step losses and epoch means bitwise equal to an uninterrupted run."""
    root, _ = tiny_synth
    extra = ["data.workers=2"]
    whole = tmp_path / "whole"
    # bitwise equality across processes needs the same intra-op thread count on both sides (other
    # tests may have changed this process's): one thread here and in the subprocess
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _preempt_and_resume(sig, root, extra, whole, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _preempt_and_resume(sig, root, extra, whole, tmp_path):
    pretrain(_config(root, "simclr", 3, extra), whole)

    out = tmp_path / "run"
    command = [
        "pretrain",
        "--method",
        "simclr",
        "--data",
        str(root),
        "--epochs",
        "3",
        "--out",
        str(out),
        "--resume",
        "auto",
        *cli_sets(extra),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vdiag", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_steps(out / "metrics.jsonl", 4, proc)  # in epoch 2 of 3 (3 steps per epoch)
    proc.send_signal(getattr(signal, sig))
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == ExitCode.PREEMPTED == 75, stderr
    assert stderr.count(f"{sig}: saving and stopping after this step") == 1, stderr  # not once per loader worker
    assert "Continue with: vdiag pretrain --resume auto --out" in stderr and "Traceback" not in stderr
    position = load_checkpoint(out / "last.pt")["position"]
    assert not position["finished"] and 4 <= position["global_step"] < 9
    assert position["global_step"] == len(step_losses(out))  # no step lost

    run_cli(*command)  # the requeued job: the same command
    assert step_losses(out) == step_losses(whole)
    assert epoch_summaries(out) == epoch_summaries(whole)


def test_resume_auto_starts_fresh_then_refuses_other_settings(tiny_synth, tmp_path):
    root, _ = tiny_synth
    out = tmp_path / "run"
    base = ["pretrain", "--data", str(root), "--out", str(out), *cli_sets()]
    first = run_cli(*base, "--method", "simclr", "--epochs", "1", "--resume", "auto", "--json")
    assert json.loads(first.stdout)["metrics"]["steps_done"] == 3 and "holds no checkpoint: starting a new run" in first.stderr
    moco = run_cli(*base, "--method", "moco", "--epochs", "2", "--resume", "auto", check=False)
    assert moco.returncode == 2 and "holds a simclr run, not moco" in moco.stderr
    plain = run_cli("pretrain", "--resume", "--out", str(out), "--method", "moco", check=False)
    assert plain.returncode == 2 and "holds a simclr run, not moco" in plain.stderr
    other = run_cli(*base, "--method", "simclr", "--epochs", "2", "--resume", "auto", "--set", "method_args.temperature=0.5", check=False)
    assert other.returncode == 2 and "method_args.temperature 0.1 → 0.5" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    lower = run_cli("pretrain", "--resume", "--out", str(out), "--epochs", "2", "--set", "train.lr=2e-4", "--json")
    assert "resuming with train.lr 0.0002" in lower.stderr
    assert load_checkpoint(out / "final.pt")["config"]["train"]["lr"] == 0.0002
    assert json.loads(lower.stdout)["metrics"]["steps_done"] == 6


def test_periodic_checkpoints_mid_epoch(tiny_synth, tmp_path):
    root, _ = tiny_synth
    seen = {}

    def look(record):
        if record["global_step"] == 5:  # epoch 2, step 2: last.pt of step 4 (every 2 steps), not of the epoch end (3)
            seen.update(load_checkpoint(tmp_path / "last.pt")["position"])
        return False

    pretrain(_config(root, "simclr", 2, ["train.save_every_steps=2"]), tmp_path, on_step=look)
    assert (seen["epoch"], seen["step"], seen["global_step"]) == (1, 1, 4)
    assert seen["counted"] == 1 and set(seen["sums"]) >= {"loss"}  # the partial epoch's sums travel with it


def test_a_non_finite_state_is_never_checkpointed(tiny_synth, tmp_path, monkeypatch):
    """A batch-norm running variance that overflows while the loss is finite: last.pt stays the last finite one."""
    root, _ = tiny_synth
    config = _config(root, "simclr", 3)
    pretrain(config, tmp_path, stop_after_epochs=1)
    good = (tmp_path / "last.pt").read_bytes()
    from vdiag.methods.base import Method

    def poison(self, progress):
        for name, buffer in self.named_buffers():
            if name.endswith("running_var"):
                buffer.fill_(float("inf"))
                return

    monkeypatch.setattr(Method, "after_step", poison)
    with pytest.raises(
        VdiagError, match=r"state became NaN or infinite .*running_var.*kept the last good checkpoint .* \(every tensor finite\)"
    ):
        pretrain(config, tmp_path, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == good
    state = load_checkpoint(tmp_path / "last.pt")
    assert non_finite_tensors(state["model"], state["optimizer"]["state"]) == []


def test_non_finite_tensors_sees_buffers_and_optimiser_state():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert non_finite_tensors(model.state_dict()) == []
    model[1].running_var[0] = float("inf")
    assert non_finite_tensors(model.state_dict(), {"0": {"exp_avg": torch.tensor([float("nan")])}}) == ["1.running_var", "0.exp_avg"]


def test_loss_spikes_are_reported(monkeypatch):
    from vdiag.train import trainer

    warnings = []
    monkeypatch.setattr(trainer, "warn", warnings.append)
    run = SimpleNamespace(recent_losses=trainer.deque(maxlen=100), spikes=0, main=True)
    position = trainer.Position(epoch=0, step=0)
    losses = [2.0 + 0.01 * i for i in range(12)] + [25.0, 2.1, 19.0]
    for loss in losses:
        position.step += 1
        trainer._watch_spikes(run, position, loss)
    assert run.spikes == 1 and len(warnings) == 1  # 25 > 10 × median 2.06; 19 is not
    assert "loss spike at epoch 1, step 13: 25 is 12× the running median" in warnings[0]


def test_a_second_run_into_the_same_folder_is_refused_and_a_stale_lock_taken_over(tiny_synth, tmp_path):
    root, _ = tiny_synth
    out = tmp_path / "run"
    with folder_lock(out):
        with pytest.raises(VdiagError, match=r"is in use by another vdiag \(pid \d+"):
            pretrain(_config(root, "simclr", 1), out)
        assert (out / LOCK_NAME).exists()  # the refused run removed nothing
    assert not (out / LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": 0}))
    leftover = out / ".last.pt.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    result = pretrain(_config(root, "simclr", 1), out)
    assert result.details["finished"] and not leftover.exists() and not (out / LOCK_NAME).exists()


def test_an_unwritable_out_is_found_before_any_computation(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("pretrain", "--method", "simclr", "--data", str(tmp_path / "no-data"), "--out", str(blocker / "run"), check=False)
    assert proc.returncode == 2 and f"cannot create {blocker / 'run'}" in proc.stderr  # before the missing data is noticed
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_run_failing_in_its_first_epoch_leaves_no_stub(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("pretrain", "--method", "simclr", "--data", str(tmp_path / "no-data"), "--out", str(out), check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not out.exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's")
    run_cli("pretrain", "--method", "simclr", "--data", str(tmp_path / "no-data"), "--out", str(kept), check=False)
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_kill_9_during_checkpoint_writes_never_leaves_an_unloadable_file(tmp_path):
    """Processes killed at random moments while writing checkpoints: last.pt always loads, and the
    temporaries they leave are removed by the next start (`remove_stale_temporaries`)."""
    state = {"model": {f"w{i}": torch.randn(256, 256) for i in range(8)}, "config": {"method": "simclr"}}
    save_checkpoint(tmp_path / "last.pt", **state, position={"global_step": 0})
    code = (
        "import sys, torch; from vdiag.checkpoint import save_checkpoint\n"
        f"model = {{f'w{{i}}': torch.randn(256, 256) for i in range(8)}}\n"
        "print('ready', flush=True)\n"
        "for step in range(1, 10**6):\n"
        f"    save_checkpoint({str(tmp_path / 'last.pt')!r}, model=model, config={{}}, position={{'global_step': step}})\n"
    )
    rng, tried = random.Random(0), 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.0))  # a random moment of a loop that is writing almost all the time
        proc.kill()
        proc.wait()
        tried += 1
        loaded = load_checkpoint(tmp_path / "last.pt")
        assert loaded["position"]["global_step"] >= 0 and non_finite_tensors(loaded["model"]) == []
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"] and tried == 3


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    "payload",
    [
        _Exploit(),
        {"format": "vdiag", "config": {}, "model": {}, "position": _Exploit()},
        {"format": "vdiag", "model": {"w": torch.ones(1)}, "config": SimpleNamespace(method="simclr"), "position": {}},
    ],
    ids=["reduce", "nested-reduce", "foreign-object"],
)
def test_every_loader_refuses_a_malicious_pickle(payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(VdiagError, match="holds pickled Python objects besides tensors"):
        load_checkpoint(path)
    proc = run_cli("probe", "static-bias", str(path), check=False)
    assert proc.returncode == 2 and "pickled Python objects" in proc.stderr
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", ["runs/a[/b]/final.pt", "runs/[best]/final.pt", "gloo [/__w/pytorch/pair.cc:545] x"])
def test_user_text_in_messages_is_printed_literally(name):
    proc = run_cli("probe", "static-bias", name, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: checkpoint {name} does not exist"


def test_the_recorded_dataset_is_checked_when_a_diagnostic_reads_it(tiny_synth, tmp_path):
    root, _ = tiny_synth
    index = load_index(root, split="train")
    config = {"data": {"path": str(root), "format": "auto", "split": "train", "split_id": 1}}
    config["data"]["fingerprint"] = dataset_fingerprint(index.records, index.root)
    check_recorded_data(config, load_split=load_index)  # the same data: no complaint
    with pytest.raises(VdiagError, match="relative path 'data'"):
        check_recorded_data({"data": {"path": "data"}}, load_split=load_index)
    other = {"data": {**config["data"], "fingerprint": "24:0000000000000000"}}
    with pytest.raises(VdiagError, match="is not the one this checkpoint was trained on"):
        check_recorded_data(other, load_split=load_index)
    run = tmp_path / "run"
    pretrain(_config(root, "simclr", 1), run)
    assert load_checkpoint(run / "final.pt")["config"]["data"]["fingerprint"] == config["data"]["fingerprint"]


def test_demo_reuses_only_runs_made_with_its_settings(tiny_synth, tmp_path, monkeypatch):
    """`vdiag demo` run again with other settings (here epochs 1 → 2) trains again instead of reusing."""
    from vdiag import demo
    from vdiag.train import trainer

    root, _ = tiny_synth
    trained = []

    def fake_pretrain(config, out, **kwargs):
        trained.append(config["train"]["epochs"])
        save_checkpoint(out / "final.pt", config=config, model={}, position={"finished": True})

    monkeypatch.setattr(trainer, "pretrain", fake_pretrain)
    run, folder = demo.DEMO_RUNS[2], tmp_path / "runs" / "v-simclr"
    one = demo.DemoSettings(num_train=24, epochs=1)
    for settings in (one, one, demo.DemoSettings(num_train=24, epochs=2)):
        path = demo._pretrain(run, str(root), folder, settings, seed=0, device="cpu", decoder="auto")
        assert load_checkpoint(path)["config"]["train"]["epochs"] == settings.epochs
    assert trained == [1, 2]  # the second call reused the first run; the third did not reuse it


def test_a_stop_asked_at_an_epochs_last_step_ends_the_epoch_first(tiny_synth, tmp_path):
    """The epoch's summary is written and, when it was the last epoch, the run finishes (final.pt)."""
    root, _ = tiny_synth
    stopped = pretrain(_config(root, "simclr", 2), tmp_path / "a", on_step=lambda r: r["global_step"] == 3)
    assert not stopped.details["finished"] and len(epoch_summaries(tmp_path / "a")) == 1
    position = load_checkpoint(tmp_path / "a" / "last.pt")["position"]
    assert (position["epoch"], position["step"], position["global_step"]) == (1, 0, 3)
    done = pretrain(_config(root, "simclr", 1), tmp_path / "b", on_step=lambda r: r["global_step"] == 3)
    assert done.details["finished"] and (tmp_path / "b" / "final.pt").is_file()
