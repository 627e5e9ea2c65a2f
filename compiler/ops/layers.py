"""Layer ops: the sliding windows of a 1-D or 2-D convolution or pooling (a strided view) and their
adjoints, and dropout's reproducible mask. Each prints a call to a small helper function that the
generated module carries."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, fmt
from .rule import Check, Op, arg, register


@register
class windows(Op):
    """(N, L, C) -> (N, L_out, k, C): the k taps each output position of a 1-D convolution or
    pooling reads (static: k, stride, padding, dilation). A strided view; its VJP adds back."""
    temp, view = "windows", True
    math = ("windows({0})", r"\operatorname{{windows}}\left({0}\right)")
    helper = ("def _windows(x, k, stride, padding, dilation):\n"
              "    \"\"\"(N, L, C) -> (N, L_out, k, C): the taps each output position reads (a view).\"\"\"\n"
              "    if padding:\n"
              "        x = np.pad(x, ((0, 0), (padding, padding), (0, 0)))\n"
              "    span = dilation * (k - 1) + 1\n"
              "    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=1)\n"
              "    return view[:, ::stride, :, ::dilation].transpose(0, 1, 3, 2)\n")
    helper_torch = (
        "def _windows(x, k, stride, padding, dilation):\n"
        "    \"\"\"(N, L, C) -> (N, L_out, k, C): the taps each output position reads (a view).\"\"\"\n"
        "    if padding:\n"
        "        x = torch.nn.functional.pad(x, (0, 0, padding, padding))\n"
        "    span = dilation * (k - 1) + 1\n"
        "    return x.unfold(1, span, stride)[..., ::dilation].transpose(2, 3)\n")
    helper_jax = (
        "def _windows(x, k, stride, padding, dilation):\n"
        "    \"\"\"(N, L, C) -> (N, L_out, k, C): the taps each output position reads, tap by tap.\"\"\"\n"
        "    if padding:\n"
        "        x = np.pad(x, ((0, 0), (padding, padding), (0, 0)))\n"
        "    l_out = (x.shape[1] - dilation * (k - 1) - 1) // stride + 1\n"
        "    return np.stack([x[:, j * dilation:j * dilation + stride * (l_out - 1) + 1:stride]\n"
        "                     for j in range(k)], axis=2)\n")
    check = Check({"a": ((2, 7, 3), (-1, 1))},
                  "sum(tanh(apply(P.windows, a, 3, 2, 1, 1)) * apply(P.windows, a, 3, 2, 1, 1))")

    @staticmethod
    def out_length(length: int, k: int, stride: int, padding: int, dilation: int) -> int:
        return (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1

    @classmethod
    def shape_of(cls, node, arg_shapes):
        x = arg_shapes[0]
        k, stride, padding, dilation = (int(v) for v in node.args[1:5])
        if len(x) != 3 or not isinstance(x[1], int):
            raise ShapeMismatch(f"expects (batch, length, channels) with a fixed length, got {fmt(x)}")
        out = cls.out_length(x[1], k, stride, padding, dilation)
        if out < 1:
            raise ShapeMismatch(f"a window of {k} taps (dilation {dilation}) does not fit a length of "
                                f"{x[1]} with padding {padding}")
        return (x[0], out, k, x[2])

    def vjp(self, g, shape):
        length = shape(self.args[0])[1]
        return (unwindows(g, sp.Integer(length), *self.args[1:5]),)

    @staticmethod
    def eager(x, k, stride, padding, dilation):
        x = np.concatenate([np.zeros_like(x[:, :padding]), x, np.zeros_like(x[:, :padding])], axis=1)
        n_out = windows.out_length(x.shape[1] - 2 * padding, k, stride, padding, dilation)
        return np.stack([np.stack([x[:, i * stride + j * dilation] for j in range(k)], axis=1)
                         for i in range(n_out)], axis=1)

    def _numpycode(self, p):
        p.helpers.add(type(self))
        args = ", ".join(str(int(v)) for v in self.args[1:5])
        return f"_windows({p._print(self.args[0])}, {args})"


@register
class unwindows(Op):
    """The adjoint of `windows`: each tap's gradient is added back where it was read."""
    temp, view = "unwindows", False
    math = ("unwindows({0})", r"\operatorname{{unwindows}}\left({0}\right)")
    helper = ("def _unwindows(g, length, k, stride, padding, dilation):\n"
              "    \"\"\"Adjoint of _windows: (N, L_out, k, C) -> (N, length, C), overlaps summed.\"\"\"\n"
              "    n, l_out, _, c = g.shape\n"
              "    out = np.zeros((n, length + 2 * padding, c), dtype=g.dtype)\n"
              "    for j in range(k):\n"
              "        start = j * dilation\n"
              "        out[:, start:start + stride * (l_out - 1) + 1:stride, :] += g[:, :, j, :]\n"
              "    return out[:, padding:padding + length, :]\n")
    helper_torch = helper.replace("dtype=g.dtype)", "dtype=g.dtype, device=g.device)")
    helper_jax = helper.replace(
        "        out[:, start:start + stride * (l_out - 1) + 1:stride, :] += g[:, :, j, :]\n",
        "        out = out.at[:, start:start + stride * (l_out - 1) + 1:stride, :].add(g[:, :, j, :])\n")
    check = Check({"a": ((2, 4, 3, 2), (-1, 1))},
                  "sum(tanh(apply(P.unwindows, a, 8, 3, 2, 1, 1)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g = arg_shapes[0]
        length, k, stride, padding, dilation = (int(v) for v in node.args[1:6])
        if len(g) != 4 or windows.out_length(length, k, stride, padding, dilation) != g[1]:
            raise ShapeMismatch(f"unwindows: {fmt(g)} are not the windows of a length of {length}")
        return (g[0], length, g[3])

    def vjp(self, g, shape):
        return (windows(g, *self.args[2:6]),)

    @staticmethod
    def eager(g, length, k, stride, padding, dilation):
        out = np.zeros((g.shape[0], length + 2 * padding, g.shape[3]))
        for i in range(g.shape[1]):
            for j in range(k):
                out[:, i * stride + j * dilation] += g[:, i, j]
        return out[:, padding:padding + length]

    def _numpycode(self, p):
        p.helpers.add(type(self))
        args = ", ".join(str(int(v)) for v in self.args[1:6])
        return f"_unwindows({p._print(self.args[0])}, {args})"


# ---- images (channels last): the 2-D windows and their adjoint -------------------------------

def pairs_of(node, first: int, count: int) -> list[tuple[int, int]]:
    """`count` static (rows, columns) pairs of `node` from argument `first` on, as ints."""
    return [(int(a[0]), int(a[1])) for a in node.args[first:first + count]]


def image_out(size: tuple[int, int], k, stride, padding, dilation) -> tuple[int, int]:
    """(H_out, W_out) of 2-D windows over an (H, W) image (each argument a (rows, columns) pair)."""
    return tuple(windows.out_length(size[i], k[i], stride[i], padding[i], dilation[i]) for i in (0, 1))


@register
class windows2d(Op):
    """(N, H, W, C) -> (N, H_out, W_out, kh, kw, C): the kh·kw taps each output pixel of a 2-D
    convolution or pooling reads (static (rows, columns) pairs: kernel, stride, padding, dilation).
    A strided view (of a zero-padded copy when padding); its VJP adds back with unwindows2d."""
    temp, view = "windows", True
    math = ("windows2d({0})", r"\operatorname{{windows_{{2d}}}}\left({0}\right)")
    helper = ("def _windows2d(x, kernel, stride, padding, dilation):\n"
              "    \"\"\"(N, H, W, C) -> (N, H_out, W_out, kh, kw, C): the taps each output pixel reads (a view).\"\"\"\n"
              "    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation\n"
              "    if ph or pw:\n"
              "        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))\n"
              "    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)\n"
              "    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(1, 2))\n"
              "    return view[:, ::sh, ::sw, :, ::dh, ::dw].transpose(0, 1, 2, 4, 5, 3)\n")
    helper_torch = (
        "def _windows2d(x, kernel, stride, padding, dilation):\n"
        "    \"\"\"(N, H, W, C) -> (N, H_out, W_out, kh, kw, C): the taps each output pixel reads (a view).\"\"\"\n"
        "    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation\n"
        "    if ph or pw:\n"
        "        x = torch.nn.functional.pad(x, (0, 0, pw, pw, ph, ph))\n"
        "    view = x.unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)\n"
        "    return view[..., ::dh, ::dw].permute(0, 1, 2, 4, 5, 3)\n")
    helper_jax = (
        "def _windows2d(x, kernel, stride, padding, dilation):\n"
        "    \"\"\"(N, H, W, C) -> (N, H_out, W_out, kh, kw, C): the taps each output pixel reads, tap by tap.\"\"\"\n"
        "    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation\n"
        "    if ph or pw:\n"
        "        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))\n"
        "    h_out = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1\n"
        "    w_out = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1\n"
        "    rows = [x[:, i * dh:i * dh + sh * (h_out - 1) + 1:sh] for i in range(kh)]\n"
        "    return np.stack([np.stack([r[:, :, j * dw:j * dw + sw * (w_out - 1) + 1:sw] for j in range(kw)],\n"
        "                              axis=3) for r in rows], axis=3)\n")
    check = Check({"a": ((2, 5, 6, 2), (-1, 1))},
                  "sum(tanh(apply(P.windows2d, a, (2, 3), (2, 1), (0, 0), (1, 2))) * "
                  "apply(P.windows2d, a, (2, 3), (2, 1), (0, 0), (1, 2)))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        x = arg_shapes[0]
        k, stride, padding, dilation = pairs_of(node, 1, 4)
        if len(x) != 4 or not all(isinstance(d, int) for d in x[1:3]):
            raise ShapeMismatch(f"expects images (batch, height, width, channels) with a fixed height "
                                f"and width, got {fmt(x)}")
        out = image_out(x[1:3], k, stride, padding, dilation)
        if min(out) < 1:
            raise ShapeMismatch(f"a {k[0]}×{k[1]} window (dilation {dilation[0]}×{dilation[1]}) does not "
                                f"fit a {x[1]}×{x[2]} image with padding {padding[0]}×{padding[1]}")
        return (x[0], *out, *k, x[3])

    def vjp(self, g, shape):
        size = sp.Tuple(*(sp.Integer(d) for d in shape(self.args[0])[1:3]))
        return (unwindows2d(g, size, *self.args[1:5]),)

    @staticmethod
    def eager(x, k, stride, padding, dilation):
        """Loops over output pixels and taps, reading a zero-padded copy."""
        n, height, width, c = x.shape
        padded = np.zeros((n, height + 2 * padding[0], width + 2 * padding[1], c))
        padded[:, padding[0]:padding[0] + height, padding[1]:padding[1] + width] = x
        h_out, w_out = image_out((height, width), k, stride, padding, dilation)
        out = np.empty((n, h_out, w_out, k[0], k[1], c))
        for r, s, i, j in np.ndindex(h_out, w_out, k[0], k[1]):
            out[:, r, s, i, j] = padded[:, r * stride[0] + i * dilation[0], s * stride[1] + j * dilation[1]]
        return out

    def _numpycode(self, p):
        p.helpers.add(type(self))
        pairs = ", ".join(f"({a}, {b})" for a, b in pairs_of(self, 1, 4))
        return f"_windows2d({p._print(self.args[0])}, {pairs})"


@register
class unwindows2d(Op):
    """The adjoint of `windows2d`: each tap's gradient is added back to the pixel it read."""
    temp, view = "unwindows", False
    math = ("unwindows2d({0})", r"\operatorname{{unwindows_{{2d}}}}\left({0}\right)")
    helper = ("def _unwindows2d(g, size, kernel, stride, padding, dilation):\n"
              "    \"\"\"Adjoint of _windows2d: (N, H_out, W_out, kh, kw, C) -> (N, H, W, C), overlaps summed.\"\"\"\n"
              "    (height, width), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = size, kernel, stride, padding, dilation\n"
              "    n, h_out, w_out, _, _, c = g.shape\n"
              "    if (sh, sw) == (kh, kw) and (dh, dw) == (1, 1):  # the windows tile the image (pooling)\n"
              "        out = g.transpose(0, 1, 3, 2, 4, 5).reshape(n, h_out * kh, w_out * kw, c)\n"
              "        out = out.copy() if np.may_share_memory(out, g) else out  # a fresh array, as promised\n"
              "        rest = ((0, 0), (0, height + 2 * ph - h_out * kh), (0, width + 2 * pw - w_out * kw), (0, 0))\n"
              "        out = np.pad(out, rest) if rest[1][1] or rest[2][1] else out\n"
              "        return out[:, ph:ph + height, pw:pw + width, :]\n"
              "    out = np.zeros((n, height + 2 * ph, width + 2 * pw, c), dtype=g.dtype)\n"
              "    for i in range(kh):\n"
              "        for j in range(kw):\n"
              "            rows = slice(i * dh, i * dh + sh * (h_out - 1) + 1, sh)\n"
              "            cols = slice(j * dw, j * dw + sw * (w_out - 1) + 1, sw)\n"
              "            out[:, rows, cols, :] += g[:, :, :, i, j, :]\n"
              "    return out[:, ph:ph + height, pw:pw + width, :]\n")
    helper_torch = (helper
                    .replace("np.may_share_memory(out, g)", "out.data_ptr() == g.data_ptr()")
                    .replace(".transpose(0, 1, 3, 2, 4, 5)", ".permute(0, 1, 3, 2, 4, 5)")
                    .replace("np.pad(out, rest)", "torch.nn.functional.pad(out, (0, 0) + rest[2] + rest[1])")
                    .replace("out.copy()", "out.clone()")
                    .replace("dtype=g.dtype)", "dtype=g.dtype, device=g.device)"))
    helper_jax = (helper
                  .replace("        out = out.copy() if np.may_share_memory(out, g) else out  # a fresh array, as promised\n", "")
                  .replace("            out[:, rows, cols, :] += g[:, :, :, i, j, :]\n",
                           "            out = out.at[:, rows, cols, :].add(g[:, :, :, i, j, :])\n"))
    check = Check({"a": ((2, 3, 2, 2, 3, 2), (-1, 1))},
                  "sum(tanh(apply(P.unwindows2d, a, (5, 6), (2, 3), (2, 1), (1, 0), (1, 2))))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g = arg_shapes[0]
        size, k, stride, padding, dilation = pairs_of(node, 1, 5)
        if len(g) != 6 or tuple(g[1:5]) != image_out(size, k, stride, padding, dilation) + k:
            raise ShapeMismatch(f"unwindows2d: {fmt(g)} are not the windows of a {size[0]}×{size[1]} image")
        return (g[0], *size, g[5])

    def vjp(self, g, shape):
        return (windows2d(g, *self.args[2:6]),)

    @staticmethod
    def eager(g, size, k, stride, padding, dilation):
        """Loops over output pixels and taps, adding into a zero-padded image, then crops."""
        n, h_out, w_out, _, _, c = g.shape
        out = np.zeros((n, size[0] + 2 * padding[0], size[1] + 2 * padding[1], c))
        for r, s, i, j in np.ndindex(h_out, w_out, k[0], k[1]):
            out[:, r * stride[0] + i * dilation[0], s * stride[1] + j * dilation[1]] += g[:, r, s, i, j]
        return out[:, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]

    def _numpycode(self, p):
        p.helpers.add(type(self))
        pairs = ", ".join(f"({a}, {b})" for a, b in pairs_of(self, 1, 5))
        return f"_unwindows2d({p._print(self.args[0])}, {pairs})"


@register
class keep_mask(Op):
    """Dropout's mask for `x`: 0 with probability p, else 1/(1-p), drawn from stream k of the
    integer `seed` input so a step is reproducible. No gradient flows into the mask."""
    temp, view = "keep", False
    math = ("dropout_mask({1})", r"\operatorname{{mask}}\left({1}\right)")
    n_tensor = 2
    lazy = True
    check = Check({"a": ((3, 4), (-1, 1))}, "sum(tanh(dropout(a, 0.5)) * a) + sum(dropout(a * a, 0.2))")
    helper = ("def _keep_mask(seed, stream, shape, p):\n"
              "    \"\"\"Dropout mask: 0 with probability p, else 1/(1 - p); reproducible per (seed, stream).\"\"\"\n"
              "    keep = np.random.default_rng([int(seed), stream]).random(shape) >= p\n"
              "    return keep.astype(DTYPE) / (1 - p)\n")
    # other libraries draw with their own generators: the same p and per-(seed, stream) reproducibility,
    # other masks than NumPy's
    helper_torch = (
        "def _keep_mask(seed, stream, shape, p, *, device):\n"
        "    \"\"\"Dropout mask: 0 with probability p, else 1/(1 - p); reproducible per (seed, stream).\"\"\"\n"
        "    generator = torch.Generator(device).manual_seed((int(seed) * 1000003 + stream) % 2**63)\n"
        "    keep = torch.rand(shape, generator=generator, dtype=DTYPE, device=device) >= p\n"
        "    return keep.to(DTYPE) / (1 - p)\n")
    helper_jax = (
        "def _keep_mask(seed, stream, shape, p):\n"
        "    \"\"\"Dropout mask: 0 with probability p, else 1/(1 - p); reproducible per (seed, stream).\"\"\"\n"
        "    key = jax.random.fold_in(jax.random.key(seed.reshape(())), stream)\n"
        "    return jax.random.bernoulli(key, 1 - p, shape).astype(DTYPE) / (1 - p)\n")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        return arg_shapes[1]

    def vjp(self, g, shape):
        return None, None

    @staticmethod
    def eager(seed, x, p, stream):
        """The mask is defined by this draw: the generated module makes the same one."""
        rng = np.random.default_rng([int(seed), int(stream)])
        return (rng.random(np.shape(x)) >= p) / (1 - p)

    def _numpycode(self, p):
        p.helpers.add(type(self))
        seed, x = (p._print(a) for a in self.args[:2])
        device = ", device=device" if p.backend.device else ""
        return (f"_keep_mask({seed}, {int(self.args[3])}, {arg(p, self.args[1])}.shape, "
                f"{p._print(self.args[2])}{device})")


