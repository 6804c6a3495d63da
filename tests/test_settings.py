"""melanoma_nb.settings is the light module the console scripts read for --help: it must import no PyTorch and no numpy."""
import subprocess, sys


def test_settings_imports_only_the_standard_library():
    code = ("import melanoma_nb.settings, sys; assert 'torch' not in sys.modules and 'numpy' not in sys.modules, "
            "sorted(m for m in ('torch', 'numpy') if m in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_old_recipes_load_without_precision():
    "A checkpoint's recipe from before the `precision` field loads, with precision 'fp32' (what it was trained in)."
    from melanoma_nb.settings import Recipe
    old = {k: v for k, v in Recipe().to_dict().items() if k != 'precision'}
    assert Recipe.from_dict(old).precision == 'fp32'
