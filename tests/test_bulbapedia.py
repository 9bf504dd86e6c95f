"""Parsing both Bulbapedia list layouts (hand-written fixtures, served over 127.0.0.1) and the real saved page."""

from collections import Counter

import pytest

from local_http import FIXTURES, LocalServer
from pokemon_diffusion.collection.bulbapedia import (EXPECTED_LAYOUT, ListedPokemon, form_from_file_name,
                                               full_size_url, largest_srcset_entry, parse_list_page,
                                               resolve_url)
from pokemon_diffusion.collection.http import HttpClient
from pokemon_diffusion.errors import ScrapeError

PAGE = "https://bulbapedia.bulbagarden.net/wiki/List_of_Pok%C3%A9mon_by_National_Pok%C3%A9dex_number"


@pytest.fixture(scope="module")
def server():
    with LocalServer() as running:
        yield running


def _fetch_and_parse(server, fixture, **kwargs):
    with HttpClient(timeout=5, delay=0, retries=0, trust_env=False) as client:
        page = client.get_page(server.url(f"/wiki/{fixture}"))
    return parse_list_page(page.content, page.url, encoding=page.encoding, **kwargs)


def _by_key(rows):
    return {(r.name, r.form): r for r in rows}


def test_2022_layout(server):
    rows = _fetch_and_parse(server, "layout_2022")
    assert len(rows) == 15  # the navbox and the intro table are not Pokémon tables
    rows_by = _by_key(rows)
    bulbasaur = rows_by[("Bulbasaur", None)]
    assert bulbasaur == ListedPokemon(
        name="Bulbasaur", dex=1, form=None, types=("Grass", "Poison"),
        image_url=f"http://{server.host}/media/upload/thumb/2/21/001Bulbasaur.png/40px-001Bulbasaur.png")
    assert rows_by[("Charmander", None)].types == ("Fire",)  # colspan=2 single type counted once
    assert rows_by[("Farfetch'd", "Galarian Form")].dex == 83  # form row: regional cell blank
    assert rows_by[("Mr. Mime", "Galarian Form")].types == ("Psychic",)
    assert rows_by[("Rotom", "Heat")].types == ("Electric", "Fire")
    assert ("Ho-Oh", None) in rows_by  # a hyphen in the name is not a form
    for name in ("Nidoran♀", "Nidoran♂", "Type: Null", "Flabébé"):
        assert (name, None) in rows_by, name
    sprigatito, koraidon = rows[-2:]
    assert sprigatito.dex is None and sprigatito.types == ("Grass",)  # "#" = not numbered yet
    assert koraidon.types == ()  # the "Unknown" placeholder type is dropped


def test_2023_layout_with_rowspan_numbers_and_small_form_names(server):
    rows = _fetch_and_parse(server, "layout_2023")
    assert [(r.dex, r.name, r.form) for r in rows] == [
        (1, "Bulbasaur", None),
        (19, "Rattata", None), (19, "Rattata", "Alolan Form"),
        (32, "Nidoran♂", None),
        (52, "Meowth", None), (52, "Meowth", "Alolan Form"), (52, "Meowth", "Galarian Form"),
        (122, "Mr. Mime", None), (122, "Mr. Mime", "Galarian Form"),
        (479, "Rotom", None), (479, "Rotom", "Heat Rotom"),
        (772, "Type: Null", None),
        (906, "Sprigatito", None),
    ]
    galar = _by_key(rows)[("Meowth", "Galarian Form")]
    assert galar.types == ("Steel",)
    assert galar.image_url.endswith("/0052Meowth-Galar.png/40px-0052Meowth-Galar.png")
    assert all(r.image_url.startswith(f"http://{server.host}/") for r in rows)  # //host resolved


def test_full_size_links_the_original_files(server):
    rows = _fetch_and_parse(server, "layout_2023", full_size=True)
    assert rows[0].image_url == f"http://{server.host}/media/upload/f/fb/0001Bulbasaur.png"


def test_hostile_rows_only_keep_http_images():
    html = (FIXTURES / "hostile.html").read_bytes().replace(b"@HOST@", b"127.0.0.1:9")
    rows = parse_list_page(html, "https://127.0.0.1:9/wiki/hostile")
    names = [r.name for r in rows]
    assert not {"Script", "Inline", "Ftp"} & set(names)  # javascript:, data:, ftp: dropped
    assert names.count("Twin") == 2  # the repeated image URL is listed once
    relative = [r for r in rows if r.name == "CON"][0]
    assert relative.image_url.startswith("https://127.0.0.1:9/media/")  # resolved against the page
    assert rows[0].image_url.startswith("https://")  # //host takes the page's scheme


def test_page_without_a_pokemon_table_says_what_was_expected():
    html = "<html><head><title>Main Page</title></head><body><table><tr><th>Foo</th></tr></table></body></html>"
    with pytest.raises(ScrapeError) as info:
        parse_list_page(html, PAGE)
    message = str(info.value)
    assert "no Pokémon table" in message and "'Main Page'" in message and EXPECTED_LAYOUT in message


def test_tables_with_headers_but_no_rows_are_an_error():
    html = "<table><tr><th>Ndex</th><th>MS</th><th>Pokémon</th><th>Type</th></tr></table>"
    with pytest.raises(ScrapeError, match="no row with a name"):
        parse_list_page(html, PAGE)


@pytest.mark.parametrize("srcset, expected", [
    ("a.png 1.5x, b.png 2x", "b.png"),
    ("b.png 2x, a.png 1.5x", "b.png"),
    ("a.png 70w, b.png 140w", "b.png"),
    ("only.png", "only.png"),
    ("", None),
])
def test_largest_srcset_entry(srcset, expected):
    assert largest_srcset_entry(srcset) == expected


@pytest.mark.parametrize("src, expected", [
    ("//archives.bulbagarden.net/a.png", "https://archives.bulbagarden.net/a.png"),
    ("/media/a.png", "https://bulbapedia.bulbagarden.net/media/a.png"),
    ("http://x.org/a.png#frag", "http://x.org/a.png"),
    ("javascript:alert(1)", None),
    ("data:image/png;base64,AAAA", None),
    ("file:///etc/passwd", None),
    ("ftp://x.org/a.png", None),
    ("", None),
])
def test_resolve_url(src, expected):
    assert resolve_url(src, PAGE) == expected


@pytest.mark.parametrize("url, expected", [
    ("https://a.net/media/upload/thumb/2/21/001Bulbasaur.png/70px-001Bulbasaur.png",
     "https://a.net/media/upload/2/21/001Bulbasaur.png"),
    ("https://a.net/media/upload/2/21/001Bulbasaur.png", "https://a.net/media/upload/2/21/001Bulbasaur.png"),
    ("https://a.net/thumb/other.png", "https://a.net/thumb/other.png"),
])
def test_full_size_url(url, expected):
    assert full_size_url(url) == expected


@pytest.mark.parametrize("file_name, name, form", [
    ("019Rattata-Alola.png", "Rattata", "Alolan Form"),
    ("083Farfetch%27d-Galar.png", "Farfetch'd", "Galarian Form"),
    ("122Mr._Mime-Galar.png", "Mr. Mime", "Galarian Form"),
    ("741Oricorio-Pom-Pom.png", "Oricorio", "Pom-Pom"),
    ("800Necrozma-Dusk_Mane.png", "Necrozma", "Dusk Mane"),
    ("194Wooper-Paldea.png", "Wooper", "Paldean Form"),
    ("250Ho-Oh.png", "Ho-Oh", None),
    ("474Porygon-Z.png", "Porygon-Z", None),
    ("029Nidoran.png", "Nidoran♀", None),
    ("772Type_Null.png", "Type: Null", None),
])
def test_form_from_file_name(file_name, name, form):
    url = f"https://a.net/media/upload/thumb/1/12/{file_name}/70px-{file_name}"
    assert form_from_file_name(url, name) == form


def test_real_saved_page_2022(shared_dir):
    """The real page (October 2022) from ../shared: 994 rows, 905 numbers, 18 unnumbered."""
    page = shared_dir / "fixtures" / "bulbapedia" / "list_by_national_dex_2022-10.html"
    if not page.is_file():
        pytest.skip("the saved Bulbapedia page is not in ../shared")
    rows = parse_list_page(page.read_bytes(), PAGE)
    assert len(rows) == 994
    numbers = [r.dex for r in rows]
    assert len({n for n in numbers if n is not None}) == 905 and numbers.count(None) == 18
    assert min(n for n in numbers if n) == 1 and max(n for n in numbers if n) == 905
    forms = Counter(r.form for r in rows if r.form)
    assert forms["Alolan Form"] == 18 and forms["Galarian Form"] == 19 and forms["Hisuian Form"] == 16
    # rows sharing a national number (976 numbered rows, 905 numbers) are told apart by their form
    keys = [(r.dex, r.form) for r in rows if r.dex is not None]
    assert len(keys) == 976 and len(set(keys)) == 976
    names = {r.name for r in rows}
    assert {"Nidoran♀", "Nidoran♂", "Farfetch'd", "Mr. Mime", "Type: Null", "Ho-Oh", "Flabébé"} <= names
    assert rows[0].image_url == ("https://archives.bulbagarden.net/media/upload/thumb/2/21/001Bulbasaur.png/"
                                 "140px-001Bulbasaur.png")  # the 2x srcset entry
    assert all(r.image_url.startswith("https://archives.bulbagarden.net/") for r in rows)
    assert sum(1 for r in rows if len(r.types) == 2) == 516
