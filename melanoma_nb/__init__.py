__version__ = "0.1.0"

import os as _os
# OpenCV refuses images over this many pixels, judged from the header as its own decoder reads it; it reads the setting
# when cv2 is imported, so it is set here, before any module of the package imports cv2 (see 00_data, "decompression bombs").
_os.environ.setdefault('OPENCV_IO_MAX_IMAGE_PIXELS', _os.environ.get('MELANOMA_MAX_PIXELS', '80000000'))
