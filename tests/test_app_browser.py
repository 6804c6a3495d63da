"""melanoma-app in a real browser: Debian's Chromium driven by Playwright for Python.

CI installs both (`apt-get install chromium` in .ci/run, `playwright` in the dev extra); where either is missing these
tests FAIL with a message saying what to install, they do not skip. MELANOMA_APP_SCREENSHOT=PATH also writes the
screenshot there (nbs/images/app.png, shown in nbs/12_app.ipynb, was made so)."""
import os, re, shutil, time
from pathlib import Path

import pytest

from melanoma_nb.data import prepare, sample_root

pytestmark = pytest.mark.slow   # minutes: run by .ci/run, or with pytest --slow

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def _need_browser():
    try: import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the browser tests need Playwright for Python: pip install -e '.[dev]' (or pip install playwright)")
    if CHROMIUM is None:
        pytest.fail("the browser tests need Chromium: apt-get install chromium (Debian), as .ci/run does")


@pytest.fixture(scope='module')
def app_url(tmp_path_factory):
    "The app on a free local port, with a checkpoint trained for one epoch at 32 px on the bundled sample."
    _need_browser()
    from melanoma_nb import app as A
    from melanoma_nb.training import PRESETS, fit
    d = tmp_path_factory.mktemp('app_browser')
    cache = prepare(sample_root(), size=32, channels=3, cache_dir=d/'cache', progress=False, verbose=False)
    fit(PRESETS['default'].update(size=32, epochs=1), cache, out_dir=d/'run', progress=False, verbose=False)
    demo = A.serve(A.Analyser.from_file(d/'run'/'model.pt'))
    yield demo.local_url, demo
    A.close_app(demo)


@pytest.fixture(scope='module')
def browser(app_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox', '--disable-gpu'])
        yield b
        b.close()


def upload(page, paths):
    "Drop `paths` on the page's upload box (its file input)."
    page.locator('#mn-upload input[type=file]').set_input_files([str(p) for p in paths])


def test_two_images_then_a_bad_file(app_url, browser, tmp_path):
    url, demo = app_url
    page = browser.new_page(viewport={'width': 1000, 'height': 900})
    page.goto(url, wait_until='domcontentloaded')
    page.get_by_text('Not a medical device.').wait_for(timeout=60_000)
    assert page.locator('#mn-card').get_by_text('Model card').count() == 1

    imgs = [sorted((sample_root()/'test'/c).glob('*.jpg'))[0] for c in ('malignant', 'benign')]
    upload(page, imgs)
    page.locator('.mn-result').nth(1).wait_for(timeout=60_000)
    texts = page.locator('.mn-p').all_inner_texts()
    assert len(texts) == 2 and all(re.fullmatch(r'p\(malignant\) = [01]\.\d\d', t) for t in texts), texts
    overlays = page.locator('img.mn-overlay')
    assert overlays.count() == 2
    page.wait_for_function("[...document.querySelectorAll('img.mn-overlay')].every(i => i.complete && i.naturalWidth >= 256)")
    decision = page.locator('.mn-decision').first
    assert decision.inner_text().startswith("The model's call: ") and 'sensitivity' in decision.inner_text()
    assert decision.evaluate("e => [e, ...e.querySelectorAll('*')].every(x => +getComputedStyle(x).fontWeight < 600)")
    demo_box = page.locator('#mn-demo')                        # a model trained on the sample: said above the results
    assert 'A demonstration model.' in demo_box.inner_text() and 'fewer than about 1,000' in demo_box.inner_text()
    first = page.locator('.mn-result').first.bounding_box()
    assert demo_box.bounding_box()['y'] + demo_box.bounding_box()['height'] <= first['y'], (demo_box.bounding_box(), first)
    assert page.locator('.mn-scale').count() == 2                # a colour scale under each map
    assert 'hot colours' in page.locator('body').inner_text()  # and what hot means
    methods = page.locator('#mn-methods').inner_text()
    assert all(m in methods for m in ('Grad-CAM', 'Grad-CAM++', 'Occlusion')) and len(methods.strip().splitlines()) == 3
    shot = tmp_path/'app.png'
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get('MELANOMA_APP_SCREENSHOT'): shutil.copy(shot, os.environ['MELANOMA_APP_SCREENSHOT'])

    bad = tmp_path/'notes.jpg'
    bad.write_text('this is a text file, not a JPEG\n' * 20)
    upload(page, [bad])
    msg = page.locator('.mn-error .mn-message')
    msg.wait_for(timeout=60_000)
    assert 'not a usable image' in msg.inner_text() and 'not a recognised image format' in msg.inner_text()

    upload(page, imgs[:1])                                     # the page still works after the bad file
    page.wait_for_function("document.querySelectorAll('.mn-result:not(.mn-error)').length == 1 "
                           "&& document.querySelectorAll('.mn-error').length == 0", timeout=60_000)
    assert re.fullmatch(r'p\(malignant\) = [01]\.\d\d', page.locator('.mn-p').inner_text())

    page.locator('#mn-method').get_by_text('Grad-CAM++', exact=True).click()   # the other method redraws, no new upload
    page.wait_for_function("document.querySelector('.mn-result figcaption:last-child') && "
                           "[...document.querySelectorAll('figcaption')].some(f => f.textContent.startsWith('Grad-CAM++'))",
                           timeout=60_000)
    page.close()


def test_four_sessions_drop_the_same_images(app_url, browser):
    "4 browser sessions drop the same 3 images (one of them twice) at once: every session gets every result, no error."
    url, demo = app_url
    imgs = [sorted((sample_root()/'test'/c).glob('*.jpg'))[k] for c, k in (('malignant', 0), ('benign', 0), ('benign', 1))]
    drop = imgs + imgs[:1]                                     # the same image twice in one go, too
    ctxs = [browser.new_context(viewport={'width': 900, 'height': 700}) for _ in range(4)]   # 4 sessions, 4 cookies
    pages = [c.new_page() for c in ctxs]
    for page in pages:
        page.goto(url, wait_until='domcontentloaded')
        page.get_by_text('Not a medical device.').wait_for(timeout=60_000)
    for page in pages: upload(page, drop)                      # all four before any result: the uploads overlap
    for page in pages:
        page.wait_for_function(f"document.querySelectorAll('.mn-result').length == {len(drop)}", timeout=120_000)
        errors = page.locator('.mn-error .mn-message').all_inner_texts()
        assert errors == [], errors
        assert len(page.locator('.mn-p').all_inner_texts()) == len(drop)
        assert f'{len(drop)} of {len(drop)} image(s) analysed' in page.locator('.mn-status').inner_text()
    sessions = Path(demo.upload_dir)/'sessions'
    assert len(list(sessions.iterdir())) == 4
    for c in ctxs: c.close()
    t0 = time.monotonic()                                      # a closed page's files go at once, not in an hour
    while list(sessions.iterdir()) and time.monotonic() - t0 < 30: time.sleep(0.2)
    assert list(sessions.iterdir()) == []
