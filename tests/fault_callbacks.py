"""Run `melanoma-train` (melanoma_nb.cli.train_main) with a fault planted through a training callback, so a test can
signal or kill it at an exact moment instead of racing a timer. Used by tests/test_training.py and
tests/test_training_ddp.py.

    FAULT=mid-epoch|mid-write FAULT_MARKER=FILE python fault_callbacks.py <melanoma-train flags>
    FAULT=ddp-hash FAULT_OUT=DIR torchrun ... fault_callbacks.py <melanoma-train flags>

mid-epoch: pause before the 2nd training step of epoch 2 (after epoch 1's files were written).
mid-write: pause half-way through writing epoch 2's resume state (last.pt): half the bytes are in the temporary
           file, flushed to disk, when the test strikes.
ddp-hash:  after each epoch's training, every rank appends "<epoch> <sha256 of its weights and buffers>" to
           DIR/rank<r>.txt (the ranks of a healthy DDP run hold identical states).
The pause writes FAULT_MARKER, then sleeps; nothing else in the run is changed."""
import io, os, signal, sys, time
from pathlib import Path

# a test worker may have started this process with SIGINT ignored (inherited): restore Ctrl-C as a user has it
signal.signal(signal.SIGINT, signal.default_int_handler)


def _pause():
    Path(os.environ['FAULT_MARKER']).write_text(str(os.getpid()))
    time.sleep(600)


def faults(mode: str) -> list:
    import torch
    from melanoma_nb.training import Callback, Checkpoints, state_hash

    class PauseMidEpoch(Callback):
        def before_step(self, t):
            if t.epoch_i == 1 and t.step_i == 1: _pause()

    class PauseMidWrite(Checkpoints):
        def write_state(self, t, f):
            if t.epoch_i != 1: return super().write_state(t, f)
            buf = io.BytesIO(); torch.save(self.resume_state(t), buf); data = buf.getvalue()
            f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
            _pause()

    class HashPerRank(Callback):
        def after_train(self, t):
            with open(Path(os.environ['FAULT_OUT'])/f'rank{t.info.rank}.txt', 'a') as f:
                f.write(f"{t.epoch_i + 1} {state_hash(t.net)}\n")

    return [{'mid-epoch': PauseMidEpoch, 'mid-write': PauseMidWrite, 'ddp-hash': HashPerRank}[mode]()]


if __name__ == '__main__':
    from melanoma_nb.cli import train_main
    sys.argv[0] = 'melanoma-train'
    sys.exit(train_main(sys.argv[1:], cbs=faults(os.environ['FAULT'])))
