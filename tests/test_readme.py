"""The README's commands are the ones CI runs."""
import os
import re

from helpers import ROOT


def block(name: str) -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(rf"<!-- ci:{name} -->\s*```\s*\n(.*?)\n```\s*<!-- /ci:{name} -->", text, re.S)
    assert m, f"README has no ci:{name} block"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim():
    script = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().strip().splitlines()
    assert script[-1] == block("test")


def test_main_command_trains_digits():
    assert "symgrad train examples/digits_mlp.py --data digits" in block("main")


def test_generated_code_excerpt_is_what_the_compiler_emits():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"backward of the MLP above, as emitted:\s*```python\n(.*?)\n```", text, re.S)
    assert m, "README has no generated-code excerpt"
    golden = open(os.path.join(ROOT, "tests", "golden", "digits_mlp.py"), encoding="utf-8").read()
    assert m.group(1) in golden
