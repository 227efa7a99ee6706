"""A wrong webhook secret is visible: CloudConvert's deliveries are refused and counted, ``status``
and ``check`` show the count, and the safety poll still converts every file."""

from __future__ import annotations

from pathlib import Path

from daemon_harness import files_under, running
from rich.console import Console
from test_webhook_flow import build_config, free_port, make_dirs

from ccwatch.commands import check, status
from ccwatch.emulator import Emulator, serve
from ccwatch.testing import make_image, wait_for


def test_deliveries_signed_with_another_secret_are_counted_and_shown(tmp_path: Path) -> None:
    dirs = make_dirs(tmp_path)
    with Emulator(api_key="k", webhook_secret="the-secret-cloudconvert-uses",
                  webhook_retry_pause_s=0.05) as emu, serve(emu):
        cfg = build_config(dirs, emu, webhook_port=free_port(), safety_poll_s=1)
        for i in range(2):
            make_image(dirs.input / f"img{i}.png")
        with running(cfg) as daemon:
            wait_for(lambda: daemon.runtime.pipeline.delivered == 2, timeout=40,
                     message="both files, by the safety poll")
            seen = wait_for(lambda: status.collect(cfg).bad_signatures, timeout=20,
                            message="the refused deliveries in the ledger")
        assert files_under(dirs.output) == ["img0.jpg", "img1.jpg"]
        refused = [d for d in emu.webhook_deliveries() if d.status == 401]
        assert seen.count >= 2 and len(refused) >= seen.count  # 401 is final: no retries

    shown = status.collect(cfg)
    assert shown.bad_signatures is not None and shown.bad_signatures.count == seen.count
    assert status.as_json(shown)["webhook_bad_signatures"]["count"] == seen.count
    console = Console(record=True, width=200)
    status.render(shown, console)
    assert f"refused for a bad signature: {seen.count}" in console.export_text()

    finding = next(f for f in check.run_checks(cfg).findings
                   if f.subject == "webhook.secret_env")
    assert finding.level == check.WARN and f"{seen.count} deliveries refused" in finding.message
    assert "CLOUDCONVERT_WEBHOOK_SECRET" in finding.message and "ccwatch status" in finding.message
