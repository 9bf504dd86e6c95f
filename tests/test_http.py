"""The HTTP client against a real server on 127.0.0.1: retries, Retry-After, timeouts, size limits, blocks."""

import pytest
import urllib3.util.retry

from local_http import LocalServer
from pokemon_diffusion.collection.http import (DEFAULT_USER_AGENT, RETRY_STATUSES, BlockedError, FetchError,
                                         HttpClient, check_http_url, make_session)
from pokemon_diffusion.errors import ScrapeError


@pytest.fixture(scope="module")
def server():
    with LocalServer() as running:
        yield running


@pytest.fixture
def client():
    # No backoff, no delay: the retry logic is exercised, the clock is not.
    with HttpClient(timeout=2.0, delay=0.0, retries=2, backoff_factor=0.0, trust_env=False) as c:
        yield c


def test_session_retries_429_and_5xx_and_honours_retry_after():
    adapter = make_session(retries=3).get_adapter("https://bulbapedia.bulbagarden.net/")
    retry = adapter.max_retries
    assert set(RETRY_STATUSES) <= set(retry.status_forcelist) and 429 in retry.status_forcelist
    assert retry.respect_retry_after_header and retry.status == retry.read == retry.connect == 3
    assert not retry.raise_on_status  # the last answer comes back so the error can name its status
    assert "GET" in retry.allowed_methods and "POST" not in retry.allowed_methods


def test_every_request_carries_the_descriptive_user_agent(server, client):
    client.get_bytes(server.url("/media/upload/thumb/a/ab/Ua.png/8px-Ua.png"), max_bytes=100_000)
    assert server.user_agents[-1] == DEFAULT_USER_AGENT
    assert DEFAULT_USER_AGENT.startswith("pokemon-diffusion/")


def test_429_then_200_succeeds_with_one_retry(server, client):
    data = client.get_bytes(server.url("/flaky/one.png"), max_bytes=100_000)
    assert data.startswith(b"\x89PNG")
    assert server.hits["/flaky/one.png"] == 2


def test_retry_after_header_sets_the_wait(server, client, monkeypatch):
    slept = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)  # record instead of waiting
    data = client.get_bytes(server.url("/retry-after/two.png"), max_bytes=100_000)
    assert data.startswith(b"\x89PNG")
    assert slept == [3]  # the server's Retry-After: 3, not the (zero) backoff


def test_server_errors_fail_after_the_configured_retries(server, client):
    with pytest.raises(FetchError) as info:
        client.get_bytes(server.url("/always500/x.png"), max_bytes=100_000)
    assert info.value.status == 500 and "HTTP 500" in str(info.value) and "after 2 retries" in str(info.value)
    assert server.hits["/always500/x.png"] == 3  # first try + 2 retries


def test_404_is_not_retried(server, client):
    with pytest.raises(FetchError, match="HTTP 404") as info:
        client.get_bytes(server.url("/missing/404.png"), max_bytes=100_000)
    assert info.value.status == 404 and server.hits["/missing/404.png"] == 1


def test_a_slow_server_times_out_with_a_clear_error(server):
    with HttpClient(timeout=0.2, delay=0.0, retries=1, backoff_factor=0.0, trust_env=False) as client:
        with pytest.raises(FetchError, match=r"timed out") as info:
            client.get_bytes(server.url("/slow/t.png"), max_bytes=100_000)
    assert server.url("/slow/t.png") in str(info.value)
    assert server.hits["/slow/t.png"] == 2  # the read timeout was retried once


@pytest.mark.parametrize("route", ["/huge/a.png", "/huge-chunked/a.png"])
def test_bodies_over_max_bytes_are_refused(server, client, route):
    with pytest.raises(FetchError, match=r"too large.*10,000"):
        client.get_bytes(server.url(route), max_bytes=10_000)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "javascript:alert(1)",
                                 "data:image/png;base64,AAAA", "http:///nohost"])
def test_only_http_urls_are_fetched(client, url):
    with pytest.raises(FetchError, match="not an http"):
        client.get_bytes(url, max_bytes=1000)
    assert client.requests_made == 0
    with pytest.raises(FetchError):
        check_http_url(url)


def test_cloudflare_challenge_on_the_page_names_the_cause_and_the_offline_source(server, client):
    with pytest.raises(BlockedError) as info:
        client.get_page(server.url("/cloudflare/list"))
    message = str(info.value)
    assert "Cloudflare" in message and "--source pokedex" in message and "403" in message
    assert isinstance(info.value, ScrapeError)


def test_plain_403_on_the_page_is_a_block_too(server, client):
    with pytest.raises(BlockedError, match=r"403 Forbidden.*--source pokedex"):
        client.get_page(server.url("/forbidden/list"))


def test_plain_403_on_an_image_is_an_ordinary_failure(server, client):
    with pytest.raises(FetchError) as info:
        client.get_bytes(server.url("/forbidden/img.png"), max_bytes=1000)
    assert not isinstance(info.value, BlockedError) and info.value.status == 403


def test_page_keeps_its_bytes_and_charset(server, client):
    page = client.get_page(server.url("/wiki/layout_2023"))
    assert page.encoding.lower() == "utf-8" and "Pokémon".encode() in page.content
    assert page.url == server.url("/wiki/layout_2023")


def test_polite_delay_spaces_requests(server):
    class FakeTime:  # a clock that moves only when slept on or advanced by the test
        now = 100.0
        waits = []

        def sleep(self, seconds):
            self.waits.append(seconds)
            self.now += seconds

    fake = FakeTime()
    url = server.url("/media/upload/thumb/a/ab/D.png/8px-D.png")
    with HttpClient(timeout=2.0, delay=1.0, retries=0, trust_env=False, sleep=fake.sleep,
                    clock=lambda: fake.now) as client:
        client.get_bytes(url, max_bytes=100_000)
        fake.now += 0.25
        client.get_bytes(url, max_bytes=100_000)  # 0.25 s after the first: waits the other 0.75 s
        fake.now += 5.0
        client.get_bytes(url, max_bytes=100_000)  # late enough: no wait
    assert fake.waits == [pytest.approx(0.75)]


def test_connection_refused_is_a_fetch_error():
    with LocalServer() as stopped:
        url = stopped.url("/x.png")
    with HttpClient(timeout=0.5, delay=0.0, retries=0, trust_env=False) as client:
        with pytest.raises(FetchError, match="connection failed|timed out"):
            client.get_bytes(url, max_bytes=1000)
