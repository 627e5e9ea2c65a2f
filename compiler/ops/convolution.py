"""2-D convolution as one op, so that its VJP can choose how to compute the input gradient.

Written as im2col (windows2d, reshape, @) the input gradient is the adjoint of im2col: an (N, H_out,
W_out, kh·kw·C) array of tap gradients added back tap by tap, 44 % of LeNet's float32 step. For
stride 1 and dilation 1 it is itself a convolution: the output gradient, padded by k − 1 − p, with
the kernel flipped and its channel axes swapped (`conv2d_input_grad`). Reverse mode sees `conv2d`;
after it, `lower` rewrites the op as im2col and one product, so the forward's patches are the same
expression as the ones the weight gradient reads, and are computed once.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import sympy as sp

from ..shapes import ShapeMismatch, dim_expr, fmt
from .layers import image_out, pairs_of, unwindows2d, windows2d
from .linalg import contract_leading, matmul, transpose
from .rule import Check, Op, register
from .structure import reshape


def _static(*pairs):
    return [sp.Tuple(*(sp.Integer(v) for v in pair)) for pair in pairs]


def patches(x, shapes, k, stride, padding, dilation):
    """reshape(windows2d(x), (N, H_out·W_out, kh·kw·C)): the rows one product turns into pixels."""
    n, h, w, c = shapes(x)
    h_out, w_out = image_out((h, w), k, stride, padding, dilation)
    dims = (dim_expr(n), sp.Integer(h_out * w_out), sp.Integer(k[0] * k[1] * c))
    return reshape(windows2d(x, *_static(k, stride, padding, dilation)), sp.Tuple(*dims))


def pixels(g, g_shape):
    """(N, H_out, W_out, C) -> (N, H_out·W_out, C): one row per output pixel."""
    n, h_out, w_out, c = g_shape
    return reshape(g, sp.Tuple(dim_expr(n), sp.Integer(h_out * w_out), sp.Integer(c)))


def kernel_matrix(w, w_shape):
    """(kh, kw, C_in, C_out) -> (kh·kw·C_in, C_out): the kernel as the product's right operand."""
    kh, kw, c_in, c_out = w_shape
    return reshape(w, sp.Tuple(sp.Integer(kh * kw * c_in), sp.Integer(c_out)))


def weight_grad(x, g, shape, g_shape, k, stride, padding, dilation, w_shape):
    """Σ over images and pixels of patchesᵀ · g: the kernel's gradient, (kh, kw, C_in, C_out)."""
    rows = patches(x, shape, k, stride, padding, dilation)
    return reshape(contract_leading(rows, pixels(g, g_shape)), sp.Tuple(*(sp.Integer(d) for d in w_shape)))


@register
class conv2d(Op):
    """conv2d(x, W, kernel, stride, padding, dilation): images (N, H, W, C_in) and a kernel
    (kh, kw, C_in, C_out) -> (N, H_out, W_out, C_out), static (rows, columns) pairs."""
    temp, view = "conv", False
    math = ("{0} ⋆ {1}", r"{0} \star {1}")
    n_tensor = 2
    check = Check({"a": ((2, 5, 6, 2), (-1, 1)), "w": ((3, 2, 2, 3), (-1, 1))},
                  "sum(tanh(apply(P.conv2d, a, w, (3, 2), (1, 1), (1, 0), (1, 1))) * a[:, :, :5, :1])"
                  " + sum(sigmoid(apply(P.conv2d, a, w, (3, 2), (2, 1), (1, 1), (1, 2))))")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        x, w = arg_shapes[:2]
        k, stride, padding, dilation = pairs_of(node, 2, 4)
        if len(w) != 4 or tuple(w[:2]) != tuple(k) or len(x) != 4 or x[3] != w[2]:
            raise ShapeMismatch(f"conv2d takes images (N, H, W, C) and a kernel {k[0]}×{k[1]}×C×C_out, "
                                f"got {fmt(x)} and {fmt(w)}")
        out = windows2d.shape_of(SimpleNamespace(args=(None, *node.args[2:6])), [x])  # its checks
        return (out[0], out[1], out[2], w[3])

    def vjp(self, g, shape):
        x, w = self.args[:2]
        k, stride, padding, dilation = pairs_of(self, 2, 4)
        size = shape(x)[1:3]
        if stride == (1, 1) and dilation == (1, 1) and all(p < kk for p, kk in zip(padding, k)):
            d_x = conv2d_input_grad(g, w, *_static(size, padding))
        else:  # the adjoint of im2col: each tap's gradient added back to the pixel it read
            n, h_out, w_out, _ = shape(self)
            taps = matmul(pixels(g, shape(self)), transpose(kernel_matrix(w, shape(w))))
            d_x = unwindows2d(reshape(taps, sp.Tuple(dim_expr(n), sp.Integer(h_out), sp.Integer(w_out),
                                                     *map(sp.Integer, (*k, shape(x)[3])))),
                              *_static(size), *self.args[2:6])
        return d_x, weight_grad(x, g, shape, shape(self), k, stride, padding, dilation, shape(w))

    def flops(self, shapes, count):
        """A multiply and an add per output element and tap and input channel."""
        kh, kw, c_in, _ = shapes(self.args[1])
        return 2 * count(shapes(self)) * kh * kw * c_in

    def lower(self, shape):
        """im2col and one product: the form the generated code runs."""
        x, w = self.args[:2]
        rows = patches(x, shape, *pairs_of(self, 2, 4))
        out = sp.Tuple(*(dim_expr(d) for d in shape(self)))
        return reshape(matmul(rows, kernel_matrix(w, shape(w))), out)

    @staticmethod
    def eager(x, w, k, stride, padding, dilation):
        taps = windows2d.eager(x, k, stride, padding, dilation)   # (N, H_out, W_out, kh, kw, C)
        return np.tensordot(taps, w, axes=([3, 4, 5], [0, 1, 2]))

    def _numpycode(self, p):
        """Printed as its lowering (the pipeline lowers it before printing; this serves the rest)."""
        return p._print(self.lower(p.shapes))


@register
class conv2d_input_grad(Op):
    """The input gradient of a stride-1, undilated conv2d: (N, H_out, W_out, C_out) output gradient
    and its kernel -> (N, H, W, C_in), itself a convolution of the gradient padded by k − 1 − p with
    the flipped kernel."""
    temp, view = "conv_grad", False
    math = ("{0} ⋆ flip({1})ᵀ", r"{0} \star \operatorname{{flip}}\left({1}\right)^{{\top}}")
    n_tensor = 2
    check = Check({"a": ((2, 4, 5, 3), (-1, 1)), "w": ((3, 2, 2, 3), (-1, 1))},
                  "sum(tanh(apply(P.conv2d_input_grad, a, w, (4, 4), (1, 1))) * "
                  "apply(P.conv2d_input_grad, a, w, (4, 4), (1, 1)))")
    helper = ("def _conv2d_input_grad(g, w, padding):\n"
              "    \"\"\"A stride-1 convolution's input gradient: the output gradient, padded by k - 1 - p, convolved\n"
              "    with the kernel flipped and its channel axes swapped.\"\"\"\n"
              "    kh, kw, c_in, c_out = w.shape\n"
              "    taps = _windows2d(g, (kh, kw), (1, 1), (kh - 1 - padding[0], kw - 1 - padding[1]), (1, 1))\n"
              "    n, h, width = taps.shape[:3]\n"
              "    flipped = w[::-1, ::-1].transpose(0, 1, 3, 2).reshape(kh * kw * c_out, c_in)\n"
              "    return (taps.reshape(n, h * width, kh * kw * c_out) @ flipped).reshape(n, h, width, c_in)\n")
    helper_torch = helper.replace("w[::-1, ::-1].transpose(0, 1, 3, 2)", "w.flip((0, 1)).permute(0, 1, 3, 2)")

    @classmethod
    def shape_of(cls, node, arg_shapes):
        g, w = arg_shapes[:2]
        size, padding = pairs_of(node, 2, 2)
        if len(g) != 4 or len(w) != 4 or g[3] != w[3] or \
                tuple(g[1:3]) != image_out(size, w[:2], (1, 1), padding, (1, 1)):
            raise ShapeMismatch(f"{fmt(g)} is not the output gradient of a "
                                f"{size[0]}×{size[1]} image under a {fmt(w)} kernel")
        return (g[0], *size, w[2])

    def flops(self, shapes, count):
        kh, kw, _, c_out = shapes(self.args[1])
        return 2 * count(shapes(self)) * kh * kw * c_out

    def vjp(self, u, shape):
        """y = conv2d_input_grad(g, W) is linear in both: ∂g is the convolution of u with W, ∂W the
        kernel gradient of that convolution."""
        g, w = self.args[:2]
        k, padding = tuple(shape(w)[:2]), pairs_of(self, 3, 1)[0]
        one = (1, 1)
        d_g = conv2d(u, w, *_static(k, one, padding, one))
        return d_g, weight_grad(u, g, shape, shape(g), k, one, padding, one, shape(w))

    @staticmethod
    def eager(g, w, size, padding):
        """Every output-gradient entry times the kernel, added to the pixels that tap read."""
        n, h_out, w_out, c_out = g.shape
        kh, kw, c_in, _ = w.shape
        out = np.zeros((n, size[0] + 2 * padding[0], size[1] + 2 * padding[1], c_in))
        for r, s, i, j in np.ndindex(h_out, w_out, kh, kw):
            out[:, r + i, s + j] += g[:, r, s] @ w[i, j].T
        return out[:, padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]

    def _numpycode(self, p):
        p.helpers.add(windows2d)
        p.helpers.add(type(self))
        padding = pairs_of(self, 3, 1)[0]
        return f"_conv2d_input_grad({p._print(self.args[0])}, {p._print(self.args[1])}, {padding})"
