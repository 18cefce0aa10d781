"""Screenshot of the real TensorBoard UI showing the scaling dashboard of a demo run: docs/dashboard.png.

    python scripts/screenshot_dashboard.py                      # runs the demo (~2 min), then the screenshot
    python scripts/screenshot_dashboard.py --logdir runs        # reuses a finished demo run's log folder
    make screenshot

Steps: (a) the demo writes a TensorBoard log folder (or ``--logdir`` names one), (b) ``tensorboard`` is
started on 127.0.0.1 with a port the OS picks, (c) headless Chromium (Debian's ``chromium`` package:
``apt-get install -y chromium``) opens the CUSTOM SCALARS tab and takes a PNG, (d) the PNG is written,
reduced to a palette so that it stays small, to ``docs/dashboard.png``. Only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio"]
INSTALL_HINT = ("headless Chromium is needed for the screenshot and was not found. On Debian/Ubuntu: "
                "`sudo apt-get update && sudo apt-get install -y chromium` (or pass --chromium PATH).")


def find_chromium(path: str | None) -> str:
    for candidate in ([path] if path else ["chromium", "chromium-browser", "google-chrome"]):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    sys.exit(INSTALL_HINT)


def run_demo(out: Path) -> Path:
    """Run the demo into ``out``; return the log folder to serve."""
    print(f"running the demo into {out} (about 2 minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "lightning_scaling.demo", "--out", str(out), "--no-progress"], check=True,
                   cwd=ROOT)
    return out


def start_tensorboard(logdir: Path, timeout: float = 60.0) -> tuple[subprocess.Popen, int]:
    """``tensorboard`` on 127.0.0.1 (OS-chosen port, read from its startup line), once it serves scalars."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0",
         "--load_fast", "false"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()  # stderr read by a thread (never blocks on a full pipe; bounded wait)
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    port, seen = None, []
    while port is None and time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        port = int(match.group(1)) if match else None
    if port is None:
        process.kill()
        sys.exit(f"tensorboard did not start: {''.join(seen)[-2000:]}")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/custom_scalars/layout", timeout=5) as r:
                if json.loads(r.read()).get("category"):
                    return process, port
        except (urllib.error.URLError, ConnectionError, ValueError):
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit(f"tensorboard on port {port} served no custom-scalars layout from {logdir} within {timeout:.0f} s "
             "(is it a log folder written with the lightning-scaling callbacks?)")


def screenshot(chromium: str, url: str, png: Path, width: int, height: int, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={png}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not png.is_file():
        sys.exit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")


def shrink(png: Path, colors: int = 128) -> None:
    """Reduce the PNG to a palette (the UI has few colours): a few hundred KB instead of a few MB."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib; without it the PNG stays as Chromium wrote it
        return
    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", type=Path, help="a finished demo run's log folder (default: run the demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png", help="the PNG to write")
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=2250)
    parser.add_argument("--budget-ms", type=int, default=20_000, help="Chromium's virtual time budget")
    parser.add_argument("--fragment", default="custom_scalars", help="the TensorBoard tab (URL fragment)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    with tempfile.TemporaryDirectory(prefix="ls-demo-") as tmp:
        logdir = args.logdir if args.logdir is not None else run_demo(Path(tmp) / "runs")
        if not logdir.is_dir():
            sys.exit(f"--logdir {logdir} is not a folder")
        process, port = start_tensorboard(logdir)
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            screenshot(chromium, f"http://127.0.0.1:{port}/#{args.fragment}", args.out, args.width, args.height,
                       args.budget_ms)
        finally:
            process.kill()
            process.wait(timeout=10)
    shrink(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB); regenerate with `make screenshot`")
    return args.out


if __name__ == "__main__":
    main()
