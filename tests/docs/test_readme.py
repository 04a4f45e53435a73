"""The README's install command installs what CI (``.ci/run``) installs, and CI finds the README's
test command where it looks for it."""

from __future__ import annotations

import re
import shlex

from tests.docs.examples import ROOT, blocks_of

README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
PIN = re.compile(r"^[A-Za-z0-9_.\-]+==\S+$")
EXTRAS = re.compile(r'-e\s+"?\.\[([^\]]*)\]"?')


def ci_install() -> tuple[set[str], set[str]]:
    """(the torch/torchvision pins, the extras) that ``.ci/run`` installs."""
    lines = [ln for ln in CI.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = "\n".join(lines)
    torch = re.search(r"^\s*TORCH=\(([^)]*)\)", text, re.M)
    assert torch, f"{CI} has no TORCH=(…) array"
    pins = set(shlex.split(torch.group(1)))
    installs = [ln for ln in lines if "pip install" in ln and "-e" in ln]
    assert len(installs) == 1, f"expected one editable install in {CI}, got {installs}"
    assert '"${TORCH[@]}"' in installs[0], "CI's editable install must pin torch again (else pip may upgrade it)"
    extras = EXTRAS.search(installs[0])
    assert extras, f"no extras in {installs[0]!r}"
    return pins, {e.strip() for e in extras.group(1).split(",")}


def readme_install() -> list[str]:
    """The README's install command: the bash line that installs and runs the demo."""
    lines = [c.text for b in blocks_of(README) for c in b.commands if "pip install" in c.text and "diffprobe demo" in c.text]
    assert len(lines) == 1, f"expected one install command (pip install … && diffprobe demo) in README.md, got {lines}"
    return [part.strip() for part in lines[0].split("&&")]


def pins_and_extras(command: str) -> tuple[set[str], set[str]]:
    words = shlex.split(command)
    extras: set[str] = set()
    for w in words:
        m = re.fullmatch(r"\.\[([^\]]*)\]", w)
        if m:
            extras = {e.strip() for e in m.group(1).split(",")}
    return {w for w in words if PIN.match(w)}, extras


def test_readme_install_pins_what_ci_installs() -> None:
    ci_pins, ci_extras = ci_install()
    parts = readme_install()
    installs = [p for p in parts if p.startswith("pip install")]
    assert len(installs) == 2, f"expected torch first, then the package: {parts}"
    first, package = (pins_and_extras(p) for p in installs)
    assert first == (ci_pins, set()), f"README installs {sorted(first[0])} first; .ci/run installs {sorted(ci_pins)}"
    assert package[0] == ci_pins, f"README pins {sorted(package[0])} with the package; .ci/run pins {sorted(ci_pins)}"
    assert package[1] == ci_extras, f"README installs extras {sorted(package[1])}; .ci/run installs {sorted(ci_extras)}"
    assert parts[-1] == "diffprobe demo"


def test_every_torch_pin_named_in_the_readme_is_ci_s() -> None:
    """No stale version in the prose either (the README once said torch 2.13.0 while CI installed 2.14.1)."""
    ci_pins, _ = ci_install()
    named = set(re.findall(r"\b(torch(?:vision)?==[0-9][\w.+]*)", README.read_text()))
    assert named <= ci_pins, f"README names {sorted(named - ci_pins)}; .ci/run installs {sorted(ci_pins)}"


def test_ci_finds_the_test_command_after_its_marker() -> None:
    """``.ci/run`` runs the line two after ``<!-- ci:test-command -->`` (awk: the fence, then the command)."""
    lines = README.read_text().splitlines()
    at = [i for i, ln in enumerate(lines) if "<!-- ci:test-command -->" in ln]
    assert len(at) == 1, "README.md needs exactly one <!-- ci:test-command --> marker"
    fence, command, close = lines[at[0] + 1 : at[0] + 4]
    assert fence == "```bash" and close == "```", (fence, close)
    assert command.startswith("python -m pytest"), command
