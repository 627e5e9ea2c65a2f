"""The array libraries a module can be generated for: NumPy (the default), CuPy, PyTorch, JAX, and
numba (NumPy's code, with elementwise chains fused into compiled loops: emit/kernels.py).

Ops print themselves in NumPy (`_numpycode`), the project's reference language. A backend says how
that text reads in its library: the namespace (`np.` becomes `cp.`, `jnp.`, `torch.`), the few
functions whose names differ (`np.concatenate` is `torch.cat`), how arrays are made (a device for
torch), cast and copied, and whether arrays may be updated in place. An op whose NumPy form has no
direct counterpart declares its own form next to `_numpycode` (`_torchcode`, `_jaxcode`): the
printer calls it when its backend's `printmethod` names it. A NumPy name a backend does not know is
a compile error naming it, never a module that fails when called.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


class BackendError(ValueError):
    """Generated code would call something the chosen array library does not have."""


_NP_NAME = re.compile(r"(?<![\w.])np\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


@dataclass(frozen=True)
class Backend:
    name: str                 # what --backend takes
    imports: tuple            # the module's import lines (only its own array library)
    alias: str                # what `np.` reads as
    printmethod: str          # the op method tried before `_numpycode` ("_numpycode": none)
    mutable: bool = True      # arrays may be updated in place (item assignment, `+=` into a buffer)
    workspace: bool = False   # loss_and_grad may write its products into a kept Workspace (out=)
    device: bool = False      # constructors name the device the function's arrays live on
    renames: dict = field(default_factory=dict)    # NumPy name -> this library's expression
    known: frozenset | None = None   # NumPy names usable as alias.name (None: all of NumPy's)
    array_type: str = "np.ndarray"   # what the checks accept as an array
    conversion_hint: str = ""        # how to make one, said when something else is passed
    einsum_options: str = ", optimize=True"   # torch's einsum plans its own contraction order
    row_sums_as_products: bool = True   # bias gradients as ones(B) @ g: NumPy's BLAS beats its sum
    cast_form: str = "{}.astype(DTYPE)"  # a mask or an integer array as the module's dtype
    fused: bool = False       # elementwise chains run as compiled loops (numba), the rest as NumPy

    def translate(self, text: str) -> str:
        """NumPy code in this library's names: every `np.name` mapped, or a BackendError."""
        if self.name == "numpy":
            return text

        def one(match):
            name = match.group(1)
            if name in self.renames:
                return self.renames[name]
            if self.known is not None and name not in self.known:
                raise BackendError(f"the {self.name} backend has no counterpart of np.{name}")
            return f"{self.alias}.{name}"
        return _NP_NAME.sub(one, text)

    def new(self, constructor: str, args: str) -> str:
        """`np.zeros(shape, dtype=DTYPE)`: a new array in the module's dtype (on the arrays' device)."""
        return f"np.{constructor}({args}, dtype=DTYPE{', device=device' if self.device else ''})"

    def arange(self, size: str) -> str:
        return f"np.arange({size}{', device=device' if self.device else ''})"

    def cast(self, text: str) -> str:
        """`text` (a boolean mask, an integer array) as an array of the module's dtype."""
        return self.cast_form.format(text)

    def copy(self, text: str) -> str:
        return f"{text}.clone()" if self.name == "torch" else f"{text}.copy()"

    def integer_conds(self, v: str, classes: int | None, rank: int = 1) -> list[str]:
        """The fast-path checks of an integer input (labels when `classes`): its dtype and range.
        NumPy views int64 as unsigned, so the largest checks both ends (found by argmax: 0.55 µs
        against 1.3 for .max(), whose Python wrapper costs more than the scan); numba runs its own
        compiled loop; the others call the module's `_labels_ok`, which skips what it cannot read
        (values JAX is tracing, a GPU's while a CUDA graph is captured)."""
        if self.alias == "np":
            conds = [f"{v}.dtype == np.int64"]
            unsigned = f"{v}.view(np.uint64)" + (".flat" if rank > 1 else "")   # argmax is flat
            check = (f"_labels_ok({v}, {classes})" if self.fused
                     else f"{unsigned}[{v}.view(np.uint64).argmax()] < {classes}")
            return conds + [check] * (classes is not None)
        conds = [f"np.issubdtype({v}.dtype, np.integer)" if self.name == "jax"
                 else f"{v}.dtype == {self.alias}.int64"]
        return conds + [f"_labels_ok({v}, {classes})"] * (classes is not None)

    def scalar(self, text: str) -> str:
        """A number as a scalar of the module's dtype."""
        if self.device:   # filled on the device: no copy from the host (a CUDA graph can hold it)
            return f"torch.full((), {text}, dtype=DTYPE, device=device)"
        return f"DTYPE({text})"

    def own(self, text: str) -> str:
        """A view (a broadcast) made an array of its own, in the module's dtype."""
        return f"{text}.to(DTYPE, copy=True)" if self.name == "torch" else f"{text}.astype(DTYPE)"


NUMPY = Backend("numpy", ("import numpy as np",), "np", "_numpycode", workspace=True)
CUPY = Backend("cupy", ("import cupy as cp",), "cp", "_cupycode", array_type="cp.ndarray",
               conversion_hint="; convert with cp.asarray(...)")
JAX = Backend("jax", ("import jax", "import jax.numpy as jnp"), "jnp", "_jaxcode", mutable=False,
              row_sums_as_products=False,   # XLA fuses a sum into its neighbours, not a product
              array_type="", conversion_hint="")   # jnp takes NumPy arrays as they are
TORCH = Backend(
    "torch", ("import torch",), "torch", "_torchcode", device=True, row_sums_as_products=False,
    cast_form="{}.to(DTYPE)",
    renames={"concatenate": "torch.cat", "float32": "torch.float32", "float64": "torch.float64",
             "int64": "torch.int64", "inf": "torch.inf", "nan": "torch.nan",
             # torch.maximum takes two tensors; clamp a tensor and a tensor or a number
             "maximum": "torch.clamp_min", "minimum": "torch.clamp_max"},
    known=frozenset({"abs", "arange", "broadcast_to", "clip", "copysign", "cos", "cosh", "einsum", "empty",
                     "erf", "exp", "expm1", "eye", "full", "log", "maximum", "minimum", "ones",
                     "ones_like", "outer", "ravel", "sign", "sin", "sinh", "sqrt", "square", "stack",
                     "tanh", "trunc", "where", "zeros", "zeros_like"}),
    einsum_options="", array_type="torch.Tensor",
    conversion_hint="; convert with torch.from_numpy(...) or torch.as_tensor(...)")

NUMBA = Backend("numba", ("import numba", "import numpy as np"), "np", "_numpycode", fused=True,
                row_sums_as_products=False)   # a bias gradient is a column sum inside a fused loop
# one element of an expression inside a numba loop: NumPy's ufuncs take scalars there, np.where and
# np.clip do not (the module defines these three small compiled functions)
NUMBA_LOOP = Backend("numba", (), "np", "_numbacode", cast_form="DTYPE({})",
                     renames={"where": "_where", "clip": "_clip", "ones_like": "_one"})

BACKENDS = {b.name: b for b in (NUMPY, CUPY, TORCH, JAX, NUMBA)}

