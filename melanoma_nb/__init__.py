__version__ = "0.1.0"

import os as _os
# OpenCV refuses images over this many pixels, judged from the header as its own decoder reads it; it reads the setting
# when cv2 is imported, so it is set here, before any module of the package imports cv2 (see 00_data, "decompression bombs").
_os.environ.setdefault('OPENCV_IO_MAX_IMAGE_PIXELS', _os.environ.get('MELANOMA_MAX_PIXELS', '80000000'))

import sys as _sys
_prog = _os.path.basename((_sys.argv or [''])[0] or '')
if _prog.startswith('melanoma-'):
    # A console script: Ctrl-C while its module is still being imported (before its own handlers are in place) ends as
    # one line and exit status 130, as it does later (see 11_cli, `_run`), not as a KeyboardInterrupt traceback.
    def _interrupted_hook(kind, value, tb, _old=_sys.excepthook):
        if not issubclass(kind, KeyboardInterrupt): return _old(kind, value, tb)
        try: print(f"{_prog}: interrupted", file=_sys.stderr, flush=True)
        finally: _os._exit(130)
    _sys.excepthook = _interrupted_hook
