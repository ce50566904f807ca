"""Static files are served by name from a table: nothing outside the folder is reachable."""

from __future__ import annotations

import pytest

from rt_recon.display.assets import STATIC_DIR, StaticAssets
from rt_recon.errors import DataError
from tests.display._helpers import ConsoleProcess, console_config


def test_the_packaged_assets_are_the_pages_their_scripts_and_styles():
    assets = StaticAssets()
    expected = {"index.html", "participant.html", "console.html", "common.js", "plot.js"}
    assert expected <= set(assets.names)
    page = assets.response("console.html")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert assets.response("console.js").headers["content-type"].startswith("text/javascript")


def test_pages_load_nothing_from_outside_the_server():
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, f"{path.name} refers outside"


def test_only_regular_files_directly_in_the_folder_are_served(tmp_path):
    (tmp_path / "page.html").write_text("<p>hi</p>")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.js").write_text("1")
    secret = tmp_path.parent / "secret.js"
    secret.write_text("secret")
    (tmp_path / "link.js").symlink_to(secret)
    assets = StaticAssets(tmp_path)
    assert assets.names == ["page.html"]
    for name in ("link.js", "sub/inner.js", "../secret.js", "..", "", "page.html/"):
        assert assets.response(name).status_code == 404, name


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=f"no console assets in {tmp_path}"):
        StaticAssets(tmp_path)


@pytest.mark.slow
def test_no_url_reaches_outside_the_static_folder(tmp_path):
    with ConsoleProcess(console_config(tmp_path), tmp_path / "session.json") as console:
        assert console.get("/static/console.js")[0] == 200
        escapes = [
            "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
            "/static/..%2F..%2Fconfig.py", "/static/..%5cserver.py", "/static//etc/passwd",
            "/static/%2fetc%2fpasswd", "/static/../../../../etc/passwd", "/../../etc/passwd",
            "/static/console.js%00.html", "/static/./console.js", "/stimuli/..%2f..%2fx.png",
        ]  # fmt: skip
        for path in escapes:
            status, _, body = console.get(path)
            assert status == 404, path
            assert b"import" not in body and b"root:" not in body, path
