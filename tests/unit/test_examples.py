"""The example shipped in the package is the repository's config.example.toml and templates/."""

from __future__ import annotations

from pathlib import Path

from ccwatch.commands.init import example_files

REPO = Path(__file__).resolve().parents[2]


def test_packaged_example_equals_the_repository_copies() -> None:
    """Two copies exist (the package must carry its own); they may never drift apart."""
    repo = {"config.example.toml": (REPO / "config.example.toml").read_bytes()}
    repo |= {f"templates/{p.name}": p.read_bytes() for p in (REPO / "templates").iterdir()}
    packaged = example_files()
    assert sorted(packaged) == sorted(repo)
    for name, data in repo.items():
        assert packaged[name] == data, f"ccwatch/examples/{name} differs from {name}: copy it over"
