"""Wall time of `scopebench --help` (target: <= 0.3 s on a 2-core laptop-class machine)."""

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(repeats: int = 10) -> None:
    exe = shutil.which("scopebench") or str(Path(sys.executable).parent / "scopebench")
    subprocess.run([exe, "--help"], capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    print(f"scopebench --help: median {statistics.median(times):.3f} s, min {min(times):.3f} s "
          f"over {repeats} runs")


if __name__ == "__main__":
    main()
