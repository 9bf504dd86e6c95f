"""Runs on the Hugging Face Hub: ``hf://OWNER/REPO[@REVISION]`` wherever a run folder is accepted.

``load_run("hf://owner/repo@v1")`` (and ``--run hf://...``) downloads the run's sampling files with
``huggingface_hub.snapshot_download`` into the local Hugging Face cache (``HF_HUB_CACHE``), at the
revision given (a branch, a tag or a commit; default ``main``), then loads the snapshot folder as
a local run. A second load is served from the cache; with ``HF_HUB_OFFLINE=1`` nothing is fetched
and a revision missing from the cache is a one-line error. The commit a branch or tag resolved to
is logged: pass ``@COMMIT`` to pin exactly those files.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Tuple

from .errors import CheckpointError, require_extra

log = logging.getLogger(__name__)

HUB_PREFIX = "hf://"
DEFAULT_REVISION = "main"
# what a run folder needs for sampling (run_dir's files) and what describes it
RUN_FILES = ("config.json", "encoder.json", "ema_model.keras", "prompt_names.json", "manifest.json", "README.md")
# a cascade (``pretrained.export_pretrained`` of a cascade): cascade.json and each stage folder's run files
CASCADE_PATTERNS = ("cascade.json", "*/config.json", "*/encoder.json", "*/ema_model.keras")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_REVISION = re.compile(r"^[\w./-]{1,255}$")
ALLOWED = "hf://OWNER/REPO or hf://OWNER/REPO@REVISION (a branch, tag or commit)"


def is_hub_ref(text) -> bool:
    return isinstance(text, str) and text.startswith(HUB_PREFIX)


def parse_hub_ref(text: str) -> Tuple[str, str]:
    """``"hf://owner/repo@rev"`` -> ``("owner/repo", "rev")`` (revision default ``main``).

    Raises:
        CheckpointError: not of that form.
    """
    body = text[len(HUB_PREFIX):] if is_hub_ref(text) else ""
    repo_id, _, revision = body.partition("@")
    revision = revision if "@" in body else DEFAULT_REVISION
    if not _REPO_ID.match(repo_id) or ".." in repo_id or not _REVISION.match(revision) or ".." in revision:
        raise CheckpointError(f"run: got {text!r}; allowed: {ALLOWED}")
    return repo_id, revision


def download_run(ref: str) -> Path:
    """The local snapshot folder of the run ``ref`` names (downloaded once, then from the cache).

    Raises:
        CheckpointError: a malformed ref, or a repo, revision or file that cannot be had (offline
            and not cached, not found, no access); the message says which.
        PokemonDiffusionError: huggingface_hub is not installed.
    """
    repo_id, revision = parse_hub_ref(ref)
    require_extra(("huggingface_hub",), extra="hub", what=f"--run {ref}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(RUN_FILES + CASCADE_PATTERNS)))
    except RevisionNotFoundError:
        raise CheckpointError(f"run {ref}: the repo has no revision {revision!r}; allowed: {ALLOWED}") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"run {ref}: no model repo {repo_id!r} on the Hub (or no access to it; "
                              "log in with `hf auth login` for a private one)") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(f"run {ref}: not in the local Hugging Face cache and the Hub cannot be "
                              "reached (offline: HF_HUB_OFFLINE=1 or no network); run once online") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"run {ref}: cannot download it: {first}") from None
    if revision != folder.name:
        log.info("run %s is commit %s (pass hf://%s@%s to pin it)", ref, folder.name, repo_id, folder.name)
    return folder


def hub_name(path: Path) -> str:
    """``hf://owner/repo@commit`` for a snapshot folder of the Hugging Face cache, else ``""``."""
    path = Path(path)
    repo = path.parent.parent.name
    if path.parent.name == "snapshots" and repo.startswith("models--"):
        return f"{HUB_PREFIX}{repo[len('models--'):].replace('--', '/', 1)}@{path.name[:12]}"
    return ""
