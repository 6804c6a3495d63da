"""Run `melanoma-train` (melanoma_nb.cli.train_main) with a pause planted at an exact moment, so a test can signal or
kill it there deterministically instead of racing a timer. Used by tests/test_training.py.

    HOOK_MODE=mid-epoch|mid-write HOOK_MARKER=FILE HOOK_OUT=RUN_DIR python _train_hooks.py <melanoma-train flags>
    HOOK_MODE=ddp-hash HOOK_OUT=DIR torchrun ... _train_hooks.py <melanoma-train flags>

mid-epoch: pause inside the 2nd training step of epoch 2 (after epoch 1's files were written).
mid-write: pause half-way through writing epoch 2's resume state (RUN_DIR/last.pt): half the bytes are in the
           temporary file, flushed to disk, when the test strikes.
ddp-hash:  after each epoch's training, every rank appends "<epoch> <sha256 of its weights and buffers>" to
           DIR/rank<r>.txt (the ranks of a healthy DDP run hold identical states).
The pause writes HOOK_MARKER, then sleeps; nothing else in the run is changed."""
import io, os, signal, sys, time
from pathlib import Path


# a test worker may have started this process with SIGINT ignored (inherited): restore Ctrl-C as a user has it
signal.signal(signal.SIGINT, signal.default_int_handler)


def _pause(marker: Path):
    marker.write_text(str(os.getpid()))
    time.sleep(600)


def main():
    mode, marker, out = os.environ['HOOK_MODE'], Path(os.environ.get('HOOK_MARKER', '')), Path(os.environ['HOOK_OUT'])
    import torch
    import melanoma_nb.training as T
    if mode == 'mid-epoch':
        orig_loss, calls = T.balanced_cross_entropy, [0]
        def loss(*a, **k):
            if (out/'last.pt').exists():            # epoch 1 is finished and saved
                calls[0] += 1
                if calls[0] == 2: _pause(marker)
            return orig_loss(*a, **k)
        T.balanced_cross_entropy = loss
    elif mode == 'mid-write':
        orig_save = torch.save
        def save(obj, f, *a, **k):
            if isinstance(obj, dict) and obj.get('format') == T.RESUME_FORMAT and obj.get('epoch') == 2:
                buf = io.BytesIO(); orig_save(obj, buf, *a, **k); data = buf.getvalue()
                f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
                _pause(marker)
            return orig_save(obj, f, *a, **k)
        torch.save = save
    elif mode == 'ddp-hash':
        orig_epoch = T.Trainer.train_epoch
        def train_epoch(self, e):
            loss = orig_epoch(self, e)
            with open(out/f'rank{self.info.rank}.txt', 'a') as f: f.write(f"{e+1} {T.state_hash(self.net)}\n")
            return loss
        T.Trainer.train_epoch = train_epoch
    else: raise SystemExit(f'unknown HOOK_MODE {mode!r}')
    from melanoma_nb.cli import train_main
    sys.argv[0] = 'melanoma-train'
    sys.exit(train_main(sys.argv[1:]))


if __name__ == '__main__': main()
