"""`collect` end to end against a real server on 127.0.0.1: both layouts, resume, force, hostile pages, CLI."""

import json
import logging
import os

import pytest
from PIL import Image

from local_http import LocalServer
from pokemon_diffusion.cli import main
from pokemon_diffusion.config import DataConfig
from pokemon_diffusion.collection.pipeline import (Candidate, CollectStopped, CollectSummary, collect,
                                            materialise)
from pokemon_diffusion.collection.http import BlockedError, FetchError, HttpClient
from pokemon_diffusion.collection.metadata import read_metadata, write_metadata
from pokemon_diffusion.errors import ScrapeError


@pytest.fixture(scope="module")
def server():
    with LocalServer() as running:
        yield running


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # The CLI builds its own client, which honours proxy variables: keep 127.0.0.1 direct.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _client(timeout=5.0):
    return HttpClient(timeout=timeout, delay=0.0, retries=1, backoff_factor=0.0, trust_env=False)


def _config(server, fixture, out, **changes):
    values = dict(source="bulbapedia", url=server.url(f"/wiki/{fixture}"), out_dir=str(out), delay=0.0,
                  timeout=5.0, retries=1, caption_template="plain")  # visual captions: test_captions.py
    return DataConfig(**{**values, **changes})


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_2023_layout_collect_resume_and_force(server, tmp_path):
    config = _config(server, "layout_2023", tmp_path)
    with _client() as client:
        first = collect(config, client=client)
    assert (first.found, first.downloaded, first.skipped, first.failed) == (13, 13, 0, 0)
    entries = {e.image_path: e for e in read_metadata(tmp_path)}
    galar = entries["pokemon_images/0052_meowth_galarian.png"]
    assert (galar.name, galar.dex, galar.form, galar.types) == ("Meowth", 52, "Galarian Form", ["Steel"])
    assert galar.caption == "Meowth (Galarian Form), a Steel-type Pokémon"
    assert galar.source == "bulbapedia" and galar.source_url.endswith("/40px-0052Meowth-Galar.png")
    with Image.open(tmp_path / galar.image_path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (40, 40))  # 40x30 sprite padded

    hits = sum(server.hits.values())
    with _client() as client:
        second = collect(config, client=client)
    assert (second.downloaded, second.skipped) == (0, 13)
    assert sum(server.hits.values()) == hits  # nothing asked: page cached, images present and valid

    (tmp_path / "pokemon_images" / "0001_bulbasaur.png").unlink()
    (tmp_path / "pokemon_images" / "0019_rattata.png").write_bytes(b"\x89PNG\r\n\x1a\n half")
    with _client() as client:
        third = collect(config, client=client)
    assert (third.downloaded, third.skipped) == (2, 11)

    page = "/wiki/layout_2023"
    page_hits = server.hits[page]
    with _client() as client:
        forced = collect(config.replace(force=True), client=client)
    assert (forced.downloaded, forced.skipped) == (13, 0) and server.hits[page] == page_hits + 1


def test_2022_layout_file_names_are_safe_and_unique(server, tmp_path):
    with _client() as client:
        summary = collect(_config(server, "layout_2022", tmp_path), client=client)
    assert (summary.found, summary.downloaded, summary.failed) == (15, 15, 0)
    names = set(os.listdir(tmp_path / "pokemon_images"))
    assert {"0029_nidoran_f.png", "0032_nidoran_m.png", "0083_farfetchd.png", "0083_farfetchd_galarian.png",
            "0122_mr_mime.png", "0122_mr_mime_galarian.png", "0772_type_null.png", "0669_flabebe.png",
            "0250_ho_oh.png", "0479_rotom_heat.png", "sprigatito.png", "koraidon.png"} <= names
    koraidon = [e for e in read_metadata(tmp_path) if e.name == "Koraidon"][0]
    assert koraidon.dex is None and koraidon.types == [] and koraidon.caption == "Koraidon, a Pokémon"


def test_limit_and_full_size(server, tmp_path):
    with _client() as client:
        summary = collect(_config(server, "layout_2023", tmp_path, limit=2, full_size=True), client=client)
    assert (summary.found, summary.downloaded) == (2, 2)
    entries = read_metadata(tmp_path)
    assert entries[0].source_url == f"http://{server.host}/media/upload/f/fb/0001Bulbasaur.png"
    with Image.open(tmp_path / entries[0].image_path) as image:
        assert image.size == (48, 48)  # the "original file", not the 40 px thumbnail


def test_hostile_page_failures_are_counted_and_nothing_escapes(server, tmp_path):
    out = tmp_path / "out"
    config = _config(server, "hostile", out, max_bytes=10_000, timeout=0.3)
    with _client(timeout=0.3) as client:
        summary = collect(config, client=client)
    reasons = {f.name: f.reason for f in summary.failures}
    assert (summary.found, summary.downloaded, summary.failed) == (14, 6, 8)
    assert "not an image" in reasons["Garbage"]
    assert "truncated or corrupt" in reasons["Truncated"]
    assert "too large" in reasons["Huge"] and "too large" in reasons["Chunked"]
    assert "decompression bomb" in reasons["Bomb"]
    assert "HTTP 500" in reasons["Broken"] and "HTTP 404" in reasons["Missing"]
    assert "timed out" in reasons["Slow"]
    assert summary.line() == (f"bulbapedia: found 14, downloaded 6, skipped 0, failed 8 -> "
                              f"{out / 'pokemon_metadata.json'}")
    # every file is inside OUT, with a safe name, and no temporary file is left behind
    assert _files(tmp_path) == sorted([
        os.path.join("out", ".cache", os.listdir(out / ".cache")[0]),
        os.path.join("out", ".lock"),  # the writers' lock (locks.py), empty once collect is done
        os.path.join("out", "pokemon_metadata.json"),
        *(os.path.join("out", "pokemon_images", n) for n in [
            "0001_etc_passwd.png", "0002_a_b_cd.png", "0003_flaky.png", "0015_twin.png", "0015_twin_2.png",
            "0016_con.png"]),
    ])
    assert len(read_metadata(out)) == 6


def test_cloudflare_challenge_on_the_list_page(server, tmp_path):
    config = DataConfig(source="bulbapedia", url=server.url("/cloudflare/list"), out_dir=str(tmp_path), delay=0.0)
    with _client() as client, pytest.raises(ScrapeError) as info:
        collect(config, client=client)
    assert "Cloudflare" in str(info.value) and "--source pokedex" in str(info.value)
    assert not (tmp_path / "pokemon_metadata.json").exists()


def test_page_without_a_table(server, tmp_path):
    config = DataConfig(source="bulbapedia", url=server.url("/empty"), out_dir=str(tmp_path), delay=0.0)
    with _client() as client, pytest.raises(ScrapeError, match="no Pokémon table found .* expected a <table>"):
        collect(config, client=client)


def _candidate(name, read):
    return Candidate(name=name, source="test", where=f"test://{name}", read=read, dex=1)


def _png():
    return Image.new("RGB", (4, 4), (9, 9, 9))


def _png_bytes():
    import io

    out = io.BytesIO()
    _png().save(out, format="PNG")
    return out.getvalue()


def test_a_block_stops_fetching_but_lists_what_is_present(tmp_path):
    asked = []

    def blocked():
        asked.append("blocked")
        raise BlockedError("https://x/b.png", "a Cloudflare challenge page")

    def later():
        asked.append("later")
        return _png_bytes()

    (tmp_path / "pokemon_images").mkdir()
    _png().save(tmp_path / "pokemon_images" / "0001_present.png")
    candidates = [_candidate("First", _png_bytes), _candidate("Blocked", blocked),
                  _candidate("Present", later), _candidate("Later", later)]
    entries, summary = materialise(candidates, tmp_path, source="test", stop_after=25)
    assert asked == ["blocked"]  # nothing fetched after the block
    assert (summary.downloaded, summary.skipped, summary.failed) == (1, 1, 2)
    assert "blocked" in summary.stopped and summary.failures[-1].reason.startswith("not fetched")
    assert [e.name for e in entries] == ["First", "Present"]


def test_consecutive_failures_stop_a_web_source(tmp_path):
    calls = []

    def failing():
        calls.append(1)
        raise FetchError("https://x/a.png", "HTTP 503 after 5 retries", 503)

    candidates = [_candidate(f"P{i}", failing) for i in range(6)]
    _, summary = materialise(candidates, tmp_path, source="test", stop_after=3)
    assert len(calls) == 3 and summary.failed == 6 and "3 failures in a row" in summary.stopped


def test_collect_raises_with_the_summary_when_stopped(server, tmp_path, monkeypatch):
    from pokemon_diffusion.collection import pipeline as collect_module

    monkeypatch.setattr(collect_module, "MAX_CONSECUTIVE_FAILURES", 2)
    config = _config(server, "hostile", tmp_path, max_bytes=10_000, timeout=0.3, limit=7)
    with _client(timeout=0.3) as client, pytest.raises(CollectStopped) as info:
        collect(config, client=client)
    summary = info.value.summary
    assert isinstance(summary, CollectSummary) and summary.downloaded == 3 and summary.stopped
    assert "Rerun later to resume" in str(info.value)
    assert len(read_metadata(tmp_path)) == 3  # what is present was written before stopping


def test_embedding_paths_survive_a_rerun_when_the_caption_is_unchanged(tmp_path):
    config = DataConfig(source="pokedex", out_dir=str(tmp_path), limit=2)
    collect(config)
    entries = read_metadata(tmp_path)
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "0001_bulbasaur.npy").write_bytes(b"x")
    entries[0].embedding_path = "embeddings/0001_bulbasaur.npy"
    entries[1].embedding_path = "embeddings/0002_ivysaur.npy"  # file missing: must not be kept
    write_metadata(tmp_path, entries)
    collect(config)
    again = read_metadata(tmp_path)
    assert again[0].embedding_path == "embeddings/0001_bulbasaur.npy" and again[1].embedding_path is None


def test_cli_collect_bulbapedia(server, tmp_path, capsys):
    code = main(["-q", "collect", "--source", "bulbapedia", "--url", server.url("/wiki/layout_2023"),
                 "--out", str(tmp_path), "--delay", "0", "--retries", "0", "--timeout", "5", "--limit", "3"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("bulbapedia: found 3, downloaded 3, skipped 0, failed 0 -> ")
    items = json.loads((tmp_path / "pokemon_metadata.json").read_text(encoding="utf-8"))
    assert [item["name"] for item in items] == ["Bulbasaur", "Rattata", "Rattata"]  # the seed's loop works


def test_cli_cloudflare_is_one_line_exit_2(server, tmp_path, capsys):
    code = main(["collect", "--source", "bulbapedia", "--url", server.url("/cloudflare/x"),
                 "--out", str(tmp_path), "--delay", "0", "--retries", "0"])
    err = capsys.readouterr().err
    assert code == 2
    line = [l for l in err.splitlines() if l.startswith("error: ")]
    assert len(line) == 1 and "Cloudflare" in line[0] and "--source pokedex" in line[0]


@pytest.mark.parametrize("argv, needle", [
    (["--retries", "99"], "--retries: got '99'; allowed: an integer from 0 to 20"),
    (["--limit", "0"], "--limit: got '0'; allowed: an integer from 1 to 100000"),
    (["--max-bytes", "5"], "--max-bytes: got '5'"),
    (["--delay", "soon"], "--delay: got 'soon'"),
    (["--source", "web"], "invalid choice: 'web'"),
    (["--source", "folder"], "--source folder needs --path DIR"),
    (["--url", "ftp://x/list"], "DataConfig.url: got 'ftp://x/list'; allowed: an http(s) URL"),
])
def test_cli_bad_values_are_one_line_errors(argv, needle, capsys, tmp_path):
    try:
        code = main(["collect", "--out", str(tmp_path), *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_cli_folder_with_no_usable_image_exits_1(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    code = main(["-q", "collect", "--source", "folder", "--path", str(tmp_path / "in"), "--out", str(tmp_path / "o")])
    assert code == 1 and "failed 1" in capsys.readouterr().out
    assert not (tmp_path / "o" / "pokemon_metadata.json").exists()


def test_cli_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(["-q", "collect", "--out", str(tmp_path / "file"), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot create the dataset folder") and err.count("\n") == 1


def test_cli_warns_about_flags_the_source_does_not_use(tmp_path, caplog):
    package_logger = logging.getLogger("pokemon_diffusion")  # the CLI stops propagation to the root
    package_logger.addHandler(caplog.handler)
    try:
        code = main(["collect", "--out", str(tmp_path), "--limit", "1", "--url", "https://x.org/l", "--path", "."])
    finally:
        package_logger.removeHandler(caplog.handler)
    assert code == 0 and "--url, --path not used with --source pokedex" in caplog.text
