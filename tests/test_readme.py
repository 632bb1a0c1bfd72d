"""The README's walkthrough runs as written: every ```bash and ```python block of its "Walkthrough" section, in
order, in one fresh directory, through the installed `tritonconv` command (interpreter, tiny shapes)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


def walkthrough_blocks() -> list[tuple[str, str]]:
    """(language, code) of the walkthrough's runnable blocks; "```bash setup" (installing) is left out."""
    text = README.read_text()
    section = text[text.index("## Walkthrough"):text.index("\n## ", text.index("## Walkthrough") + 1)]
    return [(lang, code) for lang, extra, code in BLOCK.findall(section)
            if lang in ("bash", "python") and "setup" not in extra]


def test_the_setup_commands_exist():
    text = README.read_text()
    for script in ("bash .ci/tune", "bash .ci/run"):
        assert script in text and (REPO / script.split()[1]).is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="runs the walkthrough the CPU way (interpreter)")
def test_the_walkthrough_runs_as_written(tmp_path):
    blocks = walkthrough_blocks()
    assert [lang for lang, _ in blocks].count("bash") >= 4 and [lang for lang, _ in blocks].count("python") >= 2
    env = {**os.environ, "TRITON_INTERPRET": "1", "TRITONCONV_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    work = tmp_path / "work"
    work.mkdir()
    outputs, errors = [], []
    for lang, code in blocks:
        command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(command, cwd=work, env={**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{work}"},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (code, proc.stdout[-3000:], proc.stderr[-3000:])
        outputs.append(proc.stdout)
        errors.append(proc.stderr)
    everything = "\n".join(outputs)
    assert "tritonconv: tuned n1 c4→k8 3×3 6×6" in errors[-1] and "on first call" in errors[-1]
    assert "interpreter  active" in everything
    assert "2 winners cached at" in everything and "used automatically by tritonconv.conv2d" in everything
    assert "chart: tuned_speedup.png" in everything and (work / "tuned_speedup.png").exists()
    assert "exported 2 entries to tritonconv-cache.json" in everything
    difference = float(re.search(r"max difference vs PyTorch: (\S+)", everything).group(1))
    assert difference < 1e-3
