"""Run a bertdeploy command that kills itself at a chosen point (for tests/test_faults.py).

    python tests/fault_driver.py POINT SIGNAL -- bertdeploy-args...

POINT is where the process sends itself SIGNAL (``KILL`` or ``TERM``): a deterministic kill -9 (or SIGTERM) at
a precise place instead of a timed one. The points:

- ``train-epoch``: after the second epoch's evaluation, before its checkpoint is written
- ``train-checkpoint``: while the second checkpoint is written (model saved, optimizer / state not yet)
- ``train-final``: while the run folder is written (its temporary sibling holds the model, not yet the curves)
- ``export-build``: while a variant other than fp32 is built (scratch folder and temporary bundle exist)
- ``export-manifest``: just before the manifest is written into the temporary bundle
- ``predict-write``: after the first chunk of predictions went into the temporary output
- ``package-triton-swap``: after an existing model folder was parked (renamed to ``*.old``) for replacement, before
  the new one is renamed in
- ``package-wheel-pip``: while ``pip wheel`` runs, once it has made its temporary folders; SIGKILL goes to the whole
  process group (pip included: what a job scheduler or ``kill -9 -PGID`` does), so start the driver in a session
  of its own
"""

from __future__ import annotations

import os
import signal
import sys


def _die(sig: signal.Signals) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), sig)


def _install(point: str, sig: signal.Signals) -> None:
    if point == "train-epoch":
        from bertdeploy.training import callbacks

        on_log = callbacks.EpochRecorder.on_log

        def dying_on_log(self, args, state, control, logs=None, **kw):
            on_log(self, args, state, control, logs=logs, **kw)
            if logs and "eval_loss" in logs and float(logs.get("epoch") or 0) >= 2:
                _die(sig)

        callbacks.EpochRecorder.on_log = dying_on_log
    elif point == "train-checkpoint":
        import transformers

        save = transformers.Trainer._save_optimizer_and_scheduler

        def dying_save(self, output_dir):
            if self.state.epoch is not None and self.state.epoch >= 2:
                _die(sig)
            return save(self, output_dir)

        transformers.Trainer._save_optimizer_and_scheduler = dying_save
    elif point == "train-final":
        from bertdeploy.training import callbacks

        callbacks.plot_curves = lambda *a, **k: _die(sig)
    elif point == "export-build":
        from bertdeploy import variants
        from bertdeploy.exporter import builders

        build = builders.build

        def dying_build(spec, ctx):
            if spec.name != variants.BASE:
                _die(sig)
            return build(spec, ctx)

        builders.build = dying_build
    elif point == "export-manifest":
        from bertdeploy.exporter import write

        write.write_manifest = lambda *a, **k: _die(sig)
    elif point == "predict-write":
        from bertdeploy.runtime import writers

        write = writers.RowWriter.write
        calls = []

        def dying_write(self, *a, **k):
            write(self, *a, **k)
            self.f.flush()
            calls.append(1)
            if len(calls) == 1:
                _die(sig)

        writers.RowWriter.write = dying_write
    elif point == "package-triton-swap":
        replace = os.replace

        def dying_replace(src, dst, *a, **k):
            replace(src, dst, *a, **k)
            if str(dst).endswith(".old"):  # a folder was just parked for replacement
                _die(sig)

        os.replace = dying_replace
    elif point == "package-wheel-pip":
        _install_pip_kill(sig)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def _install_pip_kill(sig: signal.Signals) -> None:
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    from bertdeploy.package import wheel

    def dying_run(cmd, env=None, **kw):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        scratch = Path((env or {}).get("TMPDIR") or tempfile.gettempdir())
        while proc.poll() is None and not any(p.name.startswith("pip-") for p in scratch.iterdir()):
            time.sleep(0.01)
        sys.stdout.flush()
        sys.stderr.flush()
        os.killpg(os.getpgid(0), sig)

    wheel.subprocess.run = dying_run


def main() -> None:
    point, sig_name, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: fault_driver.py POINT SIGNAL -- ARGS..."
    _install(point, getattr(signal, f"SIG{sig_name}"))
    from bertdeploy.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":
    main()
