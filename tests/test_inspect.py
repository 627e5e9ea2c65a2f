"""Inspection: show --grad runs and agrees with the module, explain gives the textbook formulas,
graph writes DOT (and SVG where graphviz is installed), stats match a hand count, ir one per line."""
import os
import shutil

import numpy as np
import pytest

import compiler
import runtime
from compiler import inspection
from symgrad.cli import main
from compiler.draw import dot_source, render
from compiler.explain import explain
from helpers import EXAMPLES, PRELUDE


def compiled(name):
    return compiler.compile_model(os.path.join(EXAMPLES, f"{name}.py"))


def run_snippet(text, name):
    namespace = {}
    exec(compile(text, f"<{name}>", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("example, param", [("digits_mlp", "hidden.W"), ("digits_mlp", "out.b"),
                                            ("neuron", "w"), ("deep_tanh", "layer3.W"),
                                            ("chain_rule", "b")])
def test_show_grad_runs_and_matches_the_module(tmp_path, example, param):
    c = compiled(example)
    text = inspection.show_gradient(c, param)
    assert "import numpy as np" in text
    fn = run_snippet(text, f"grad_{param.replace('.', '_')}")
    path = tmp_path / "m.py"
    path.write_text(c.source)
    model = runtime.load(str(path))
    params = model.init_params(3)
    params = {k: v + 0.05 for k, v in params.items()}
    inputs = runtime.random_inputs(model, batch=5, seed=1)
    _, grads = model.loss_and_grad(params, **inputs)
    got = fn(params, **inputs)
    assert list(got) == [param]
    np.testing.assert_array_equal(got[param], grads[param])


def test_show_grad_is_a_slice(tmp_path):
    text = inspection.show_gradient(compiled("digits_mlp"), "out.W")
    assert "d_out_W = h.T @ d_logits" in text
    assert "hidden_W.T" not in text and "d_hidden_pre" not in text  # nothing below out.W


def test_show_forward_runs(tmp_path):
    c = compiled("digits_mlp")
    fn = run_snippet(inspection.show_forward(c), "forward")
    path = tmp_path / "m.py"
    path.write_text(c.source)
    model = runtime.load(str(path))
    params, inputs = model.init_params(0), runtime.random_inputs(model, batch=4)
    np.testing.assert_array_equal(fn(params, x=inputs["x"])["logits"],
                                  model.forward(params, x=inputs["x"])["logits"])


def test_explain_chain_rule_closed_form():
    c = compiled("chain_rule")
    assert explain(c, "a") == "∂e/∂a = b + 1"
    assert explain(c, "b") == "∂e/∂b = a + 2*b + 1"
    assert explain(c, "b", latex=True) == r"\frac{\partial e}{\partial \mathrm{b}} = \mathrm{a} + 2 \mathrm{b} + 1"


def test_explain_neuron_and_mlp_chain_of_vjps():
    assert explain(compiled("neuron"), "w").splitlines() == [
        "∂L/∂o = 2*(o - t)/B",
        "∂L/∂w = xᵀ·(∂L/∂o*o*(1 - o))",
    ]
    assert explain(compiled("digits_mlp"), "hidden.W").splitlines() == [
        "∂L/∂logits = (-onehot(y) + softmax(logits))/B",
        "∂L/∂h = ∂L/∂logits·out.Wᵀ",
        "∂L/∂hidden_pre = ∂L/∂h ⊙ [hidden_pre > 0]",
        "∂L/∂hidden.W = xᵀ·∂L/∂hidden_pre",
    ]


def test_graph_writes_valid_dot(tmp_path):
    c = compiled("digits_mlp")
    source = dot_source(c)
    assert source.startswith("digraph symgrad {") and source.rstrip().endswith("}")
    for name in ("d_hidden_W", "d_out_b", "hidden_pre", "logits"):
        assert f"\t{name} [label=" in source
    assert "peripheries=2" in source  # values shared by CSE are marked
    assert 'tooltip="line 7: h = relu(linear(x, 128, name=\\"hidden\\"))' in source
    render(c, str(tmp_path / "g.dot"))
    assert (tmp_path / "g.dot").read_text() == source


def test_graph_svg_or_a_clear_message(tmp_path, monkeypatch):
    c = compiled("chain_rule")
    if shutil.which("dot"):
        render(c, str(tmp_path / "g.svg"))
        svg = (tmp_path / "g.svg").read_text()
        assert "<svg" in svg and "d_b" in svg
    monkeypatch.setenv("PATH", str(tmp_path))  # now no `dot` anywhere
    with pytest.raises(compiler.ModelError, match="(?s)needs the graphviz program `dot`.*apt install graphviz"):
        render(c, str(tmp_path / "g2.svg"))
    render(c, str(tmp_path / "g2.dot"))  # .dot needs no program


def test_stats_match_a_hand_count(tmp_path):
    path = tmp_path / "s.py"
    path.write_text(PRELUDE + 'x = Input("x", ("B", 3))\nW = Param("W", (3, 2))\nloss = sum(x @ W)\n')
    table = inspection.stats(compiler.compile_model(str(path)), batch=5)
    assert table["forward FLOPs (batch 5)"] == 2 * 5 * 3 * 2 + 5 * 2   # x @ W, then the sum
    assert table["backward FLOPs (batch 5)"] == 2 * 3 * 5 * 2          # xᵀ @ ones
    assert table["peak live memory (batch 5), bytes"] == 8 + 3 * 2 * 8  # loss and d_W
    chain = inspection.stats(compiled("chain_rule"))
    assert (chain["forward ops"], chain["backward ops"]) == (3, 1)   # a+b, b+1, c*d; d_c + d_d
    assert chain["gradient ops, naive per-parameter sympy.diff"] == 4   # b + 1, a + 2b + 1


def test_stats_show_expression_swell_on_a_scalar_chain(tmp_path):
    body = 'h = Param("x", (), init=0.5)\nfor k in range(20):\n    h = tanh(Param(f"w{k}", ()) * h)\nloss = h\n'
    path = tmp_path / "chain.py"
    path.write_text(PRELUDE + body)
    table = inspection.stats(compiler.compile_model(str(path)))
    ours = table["gradient ops, reverse mode with sharing"]
    naive = table["gradient ops, naive per-parameter sympy.diff"]
    assert ours < 8 * 20 and naive > 20 * ours


def test_ir_one_equation_per_line():
    lines = inspection.ir_lines(compiled("digits_mlp").graph)
    assert "h: f64[B,128] = relu hidden_pre  # digits_mlp.py:7" in lines
    assert "hidden.W: f64[64,128] = param he_normal  # digits_mlp.py:7" in lines
    assert any(line.endswith("<- loss") for line in lines)


def test_cli_show_explain_stats_ir(tmp_path, capsys):
    model = os.path.join(EXAMPLES, "chain_rule.py")
    assert main(["show", model, "--grad", "a"]) == 0
    assert "def grad_a(params, **inputs):" in capsys.readouterr().out
    assert main(["explain", model, "--grad", "b"]) == 0
    assert capsys.readouterr().out.strip() == "∂e/∂b = a + 2*b + 1"
    assert main(["stats", model]) == 0
    assert "backward/forward FLOPs" in capsys.readouterr().out
    assert main(["ir", model]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["a", "b", "c", "d", "e"]
    assert out[-1].startswith("e: f64[] = Mul ")
    assert main(["graph", model, "-o", str(tmp_path / "g.dot")]) == 0
    assert main(["show", model, "--grad", "nope"]) == 2
    assert "no parameter named 'nope'" in capsys.readouterr().err
