"""Models: the protocol every part of advjax sees, and its kinds: the MLP, a minimal
CNN, and the CIFAR VGGs and ResNet-18 with BatchNorm.

A model is a hashable description (a frozen dataclass, static under `jit`) with

- `init(key) -> params`: one seed's parameters, a dict {layer: {...}} ("kernel" and
  "bias" for a dense or plain conv layer);
- `init_state() -> state`: one seed's running statistics, {layer: {...}} for the layers
  with BatchNorm ({} for a model without: it adds nothing to any computation);
- `apply(params, x_BxD, state=None) -> logits_BxK`: inference mode (running statistics);
- `apply_train(params, state, x_BxD, trainable, weights_B=None) -> (logits, state)`:
  training mode: the BatchNorm of each layer in `trainable` normalizes with the batch's
  statistics (examples of weight 0 left out) and moves its running statistics; every
  other layer is a fixed function, in inference mode, its statistics untouched;
- `layers`: the layer names in order; the last is the readout, every other layer is a
  feature layer;
- `preactivations(params, x_BxD, state=None)`: the pre-activations of each ReLU layer,
  in order, in inference mode (what the measures count active units and linear regions
  from);
- `options()`: the kind and every option, what a checkpoint's fingerprint records.

Sizes (parameters, activation floats per example) come from `jax.eval_shape` on these
methods (`n_parameters`, `activations_per_example`), never from a formula. This module is
the only one that names a layer: trainer, experiments, measures, checkpoints, memory
model and figures go through the protocol.

`n_in` is the shape of one example: an int d for vectors (and 2-D points), or an image
shape (H, W, C); `input_shape(model)` gives it as a tuple. Every other module counts
examples on the leading axis (after the seed axis), never on the feature axis.

`mlp`: `depth` hidden ReLU layers of `width` units, then a linear readout. At depth 1 it
is the paper's N_p, x -> relu(x W1 + b1) W2 + b2, with layers `hidden` and `readout`
(the names older checkpoints and results carry); deeper, `hidden1` ... `hiddenL`. Images
are flattened first (row-major, as the flat datasets store them), so an MLP on images
computes exactly what it does on their flat vectors.

`cnn`: the minimal conv net, no normalization: two 3x3 convolutions of `width` channels
(SAME padding, layers `conv1`, `conv2`), each followed by ReLU and 2x2 max-pooling, then
the linear `readout` on the flattened feature map. Its n_in must be an image shape.

`vgg11`, `vgg16`, `resnet18`: the CIFAR networks of Liu et al.'s code (kuangliu's
pytorch-cifar models), channels scaled by width / 64 (width 64: the standard networks).
VGG: 3x3 convolutions (with bias), each followed by BatchNorm and ReLU (layers `conv1`
... `conv8` or `conv13`), 2x2 max-pools between stacks, the readout on the flattened
map (512·width/64 features at 32x32). ResNet-18: the `stem` (3x3 conv, BatchNorm, ReLU;
no max-pool), BasicBlocks `block1` ... `block8` (two per stage, stages of width, 2·width,
4·width, 8·width channels, stride 2 entering stages 2-4, 1x1 conv + BatchNorm shortcut
where the shape changes; convolutions without bias), global average pooling, readout.
BatchNorm follows torch's BatchNorm2d: eps 1e-5, momentum 0.1 (running = 0.9·running +
0.1·batch), the running variance from the unbiased batch variance; scale 1, bias 0,
running mean 0 and variance 1 at init.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INIT_SCHEMES = ("torch", "lecun", "he", "xavier")


class Model(Protocol):
    kind: ClassVar[str]
    images: ClassVar[bool]  # capability: takes (H, W, C) images (True) or flat vectors (False)
    n_in: int | tuple[int, ...]  # one example's shape: d, or (H, W, C) for images
    n_out: int  # logits: 1 for binary tasks, K for K classes

    @property
    def layers(self) -> tuple[str, ...]: ...
    def init(self, key: jax.Array) -> dict: ...
    def init_state(self) -> dict: ...
    def apply(self, params: dict, x_BxD: jax.Array, state: dict | None = None) -> jax.Array: ...
    def apply_train(self, params: dict, state: dict, x_BxD: jax.Array, trainable: tuple[str, ...],
                    weights_B: jax.Array | None = None) -> tuple[jax.Array, dict]: ...
    def preactivations(self, params: dict, x_BxD: jax.Array, state: dict | None = None
                       ) -> tuple[jax.Array, ...]: ...
    def options(self) -> dict: ...


class _Stateless:
    """What a model without BatchNorm says about running statistics: it has none, and
    training mode is inference mode."""

    def init_state(self) -> dict:
        return {}

    def apply_train(self, params: dict, state: dict, x_BxD: jax.Array, trainable: tuple[str, ...],
                    weights_B: jax.Array | None = None) -> tuple[jax.Array, dict]:
        return self.apply(params, x_BxD), state


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _dense(features: int, fan_in: int, scheme: str, name: str) -> nn.Dense:
    if scheme == "torch":
        # torch.nn.Linear.reset_parameters: kaiming_uniform(a=√5) for the weight and
        # U(±1/√fan_in) for the bias, i.e. both U(-1/√fan_in, 1/√fan_in).
        bound = 1.0 / fan_in**0.5
        return nn.Dense(features, kernel_init=_uniform(bound), bias_init=_uniform(bound), name=name)
    kernel_init = {
        "lecun": nn.initializers.lecun_normal(),
        "he": nn.initializers.he_normal(),
        "xavier": nn.initializers.xavier_uniform(),
    }[scheme]
    return nn.Dense(features, kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=name)


class _Stack(nn.Module):
    """Dense layers named `names`, ReLU after every one but the last. Flax folds each
    layer's name into its init key, so N_p's layers `hidden`, `readout` draw exactly the
    numbers they always did."""

    names: tuple[str, ...]
    width: int
    n_out: int
    scheme: str

    @nn.compact
    def __call__(self, x_BxD: jax.Array) -> jax.Array:
        h = x_BxD
        for name in self.names[:-1]:
            h = nn.relu(_dense(self.width, h.shape[-1], self.scheme, name)(h))
        return _dense(self.n_out, h.shape[-1], self.scheme, self.names[-1])(h)


@dataclass(frozen=True)
class MLP(_Stateless):
    """`depth` hidden ReLU layers of `width` units and a linear readout; PyTorch's
    nn.Linear init per layer by default. Depth 1 is N_p. Hashable: a static argument
    of compiled programs."""

    width: int
    n_in: int
    n_out: int
    init_scheme: str = "torch"
    depth: int = 1
    kind: ClassVar[str] = "mlp"
    images: ClassVar[bool] = False  # a capability: takes flat vectors (images are flattened)

    @classmethod
    def build(cls, width: int, n_in: int | tuple[int, ...], n_out: int, init: str, depth: int, conv_impl: str):
        """The model of the sweep's options (`make_model`); an MLP takes any input flattened."""
        return cls(width, n_in if isinstance(n_in, int) else math.prod(n_in), n_out, init, depth)

    def __post_init__(self):
        if self.depth < 1 or self.width < 1:
            raise ValueError(f"an MLP needs depth >= 1 and width >= 1, got depth {self.depth}, width {self.width}")

    @property
    def layers(self) -> tuple[str, ...]:
        hidden = ("hidden",) if self.depth == 1 else tuple(f"hidden{i}" for i in range(1, self.depth + 1))
        return (*hidden, "readout")

    @property
    def _module(self) -> _Stack:
        return _Stack(self.layers, self.width, self.n_out, self.init_scheme)

    def init(self, key: jax.Array) -> dict:
        return self._module.init(key, jnp.zeros((1, math.prod(input_shape(self)))))["params"]

    def apply(self, params: dict, x_BxD: jax.Array, state: dict | None = None) -> jax.Array:
        """Logits, shape (B, n_out); images (B, H, W, C) are flattened first."""
        return self._module.apply({"params": params}, _flat(x_BxD))

    def preactivations(self, params: dict, x_BxD: jax.Array, state: dict | None = None) -> tuple[jax.Array, ...]:
        """Each hidden layer's pre-activations, shape (B, width) each."""
        out, h = [], _flat(x_BxD)
        for name in self.layers[:-1]:
            pre = h @ params[name]["kernel"] + params[name]["bias"]
            out.append(pre)
            h = jax.nn.relu(pre)
        return tuple(out)

    def options(self) -> dict:
        return {"kind": self.kind, "depth": self.depth, "width": self.width, "n_in": self.n_in,
                "n_out": self.n_out, "init": self.init_scheme}


def _flat(x_BxD: jax.Array) -> jax.Array:
    """(B, d) as it is; (B, H, W, C) images as (B, H·W·C) vectors, row-major."""
    return x_BxD if x_BxD.ndim == 2 else x_BxD.reshape(x_BxD.shape[0], -1)


def _layer_init(scheme: str, fan_in: int):
    """(kernel init, bias init) of one layer: PyTorch's default (nn.Linear and nn.Conv2d
    both draw weights and biases from U(±1/√fan_in)) or a named scheme with zero bias."""
    if scheme == "torch":
        return _uniform(1.0 / fan_in**0.5), _uniform(1.0 / fan_in**0.5)
    kernel_init = {
        "lecun": nn.initializers.lecun_normal(),
        "he": nn.initializers.he_normal(),
        "xavier": nn.initializers.xavier_uniform(),
    }[scheme]
    return kernel_init, nn.initializers.zeros


CONV_IMPLS = ("xla", "im2col", "canonical")  # how a conv net computes its convolutions (`_conv`)
DIMENSIONS = ("NHWC", "HWIO", "NHWC")  # images, kernels, outputs: the layout XLA:CPU's fast path takes


def default_conv_impl(kind: str, backend: str | None = None) -> str:
    """`--conv-impl auto`: on a CPU, the conv net's `cpu_conv_impl`, the faster in the
    trainer's loop as measured (im2col for the CNN and the VGGs, canonical for ResNet-18;
    PERFORMANCE.md, "Conv nets in the trainer's loop"); xla (lax.conv) on a GPU or TPU,
    and for models without convolutions (where it does nothing)."""
    if not takes_images(kind) or (backend or jax.default_backend()) != "cpu":
        return "xla"
    return MODELS[kind].cpu_conv_impl


def _conv(h_BxHxWxC: jax.Array, kernel_KxKxIxO: jax.Array, stride: int, impl: str) -> jax.Array:
    """A k x k convolution with torch's padding ((k-1)/2 zeros each side), no bias.
    "xla": `lax.conv_general_dilated`, differentiated by JAX. "canonical": the same
    forward convolution, and its two gradients written as convolutions in the layout of
    `DIMENSIONS` (`_canonical_conv`). "im2col": one matmul of every output position's
    k·k·C_in patch (zero-padded, strided slices) by the kernel as (k·k·C_in, C_out): the
    same function, summed in another order (last bits differ). Inside a while loop (the
    trainer's), XLA:CPU leaves the gradients JAX writes for lax.conv in other layouts
    (the kernel's gradient with examples as the contracted features, `f01b_i01o->01bf`;
    the input's with a reversed, `01oi` kernel), off its fast path, and runs them 6-20x
    slower than at a program's top level, where it rewrites them (jax-ml/jax#12868);
    "canonical" writes them as it would; on maps smaller than the kernel (VGG's 2x2
    maps) XLA swaps such a convolution's operands into another slow layout, so there
    "canonical" computes as im2col. im2col's patches hold k·k times the input's floats
    (`memory.py` counts them)."""
    k = kernel_KxKxIxO.shape[0]
    pad = (k - 1) // 2
    if impl == "xla":
        return _lax_conv(h_BxHxWxC, kernel_KxKxIxO, stride)
    if impl == "canonical" and min(h_BxHxWxC.shape[1:3]) >= k:  # smaller maps: im2col (see above)
        return _canonical_conv(h_BxHxWxC, kernel_KxKxIxO, stride)
    if pad:
        h_BxHxWxC = jnp.pad(h_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows, cols = (h_BxHxWxC.shape[1] - k) // stride + 1, (h_BxHxWxC.shape[2] - k) // stride + 1
    taps = [h_BxHxWxC[:, i: i + stride * (rows - 1) + 1: stride, j: j + stride * (cols - 1) + 1: stride]
            for i in range(k) for j in range(k)]  # (i, j, c) order: the kernel's HWIO rows
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    return patches @ kernel_KxKxIxO.reshape(-1, kernel_KxKxIxO.shape[-1])


def _lax_conv(h_BxHxWxC: jax.Array, kernel_KxKxIxO: jax.Array, stride: int) -> jax.Array:
    pad = (kernel_KxKxIxO.shape[0] - 1) // 2
    return jax.lax.conv_general_dilated(h_BxHxWxC, kernel_KxKxIxO, (stride, stride), ((pad, pad), (pad, pad)),
                                        dimension_numbers=DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _canonical_conv(h_BxHxWxC: jax.Array, kernel_KxKxIxO: jax.Array, stride: int) -> jax.Array:
    """`_lax_conv`, with a backward pass of two convolutions in `DIMENSIONS`' layout:
    the input's gradient correlates the output's gradient (dilated by the stride) with
    the kernel flipped in space, inputs and outputs swapped; the kernel's gradient
    correlates the input with the output's gradient, channels as the batch and examples
    as the features (XLA's own rewrite at a program's top level). Forward-over-reverse
    (the measures' Hessian-vector products) differentiates this backward pass."""
    return _lax_conv(h_BxHxWxC, kernel_KxKxIxO, stride)


def _canonical_fwd(h_BxHxWxC, kernel_KxKxIxO, stride):
    return _lax_conv(h_BxHxWxC, kernel_KxKxIxO, stride), (h_BxHxWxC, kernel_KxKxIxO)


def _canonical_bwd(stride, residuals, g_BxRxSxO):
    h_BxHxWxC, kernel_KxKxIxO = residuals
    k, pad = kernel_KxKxIxO.shape[0], (kernel_KxKxIxO.shape[0] - 1) // 2
    (_, height, wide, _), (_, rows, cols, _) = h_BxHxWxC.shape, g_BxRxSxO.shape
    low = k - 1 - pad  # the full correlation's padding, less what the forward pass cut off
    high = [side + k - 1 - low - ((out - 1) * stride + 1) for side, out in ((height, rows), (wide, cols))]
    flipped = jnp.flip(kernel_KxKxIxO, (0, 1)).transpose(0, 1, 3, 2)
    dh = jax.lax.conv_general_dilated(g_BxRxSxO, flipped, (1, 1), ((low, high[0]), (low, high[1])),
                                      lhs_dilation=(stride, stride), dimension_numbers=DIMENSIONS)
    dk = jax.lax.conv_general_dilated(h_BxHxWxC.transpose(3, 1, 2, 0), g_BxRxSxO.transpose(1, 2, 0, 3), (1, 1),
                                      ((pad, pad), (pad, pad)), rhs_dilation=(stride, stride),
                                      dimension_numbers=DIMENSIONS)  # (C_in, >= k, >= k, C_out)
    return dh, dk[:, :k, :k].transpose(1, 2, 0, 3)


_canonical_conv.defvjp(_canonical_fwd, _canonical_bwd)


@jax.custom_jvp
def max_pool_2x2(h_BxHxWxC: jax.Array) -> jax.Array:
    """2x2 max-pooling, stride 2, VALID (an odd last row or column dropped): the function
    and the gradient of `flax.linen.max_pool(h, (2, 2), strides=(2, 2))`, bit for bit,
    each window's derivative taken from its first maximum in row-major order (as XLA's
    select-and-scatter, and torch's max_pool2d, take it), computed without them: a
    reshape and elementwise selects, linear in the tangent (so reverse mode is its
    transpose, and Hessian-vector products work), where XLA:CPU expands select-and-scatter
    into a reduce-window over index tuples and a scatter (the CNN's step 1.8x faster in
    the trainer's loop; PERFORMANCE.md, "Conv nets in the trainer's loop")."""
    return jnp.max(_windows(h_BxHxWxC), axis=(2, 4))


def _windows(h_BxHxWxC: jax.Array) -> jax.Array:
    """(B, H/2, 2, W/2, 2, C): each 2x2 window's four values on axes 2 and 4."""
    b, height, wide, c = h_BxHxWxC.shape
    h = h_BxHxWxC[:, : height // 2 * 2, : wide // 2 * 2]
    return h.reshape(b, height // 2, 2, wide // 2, 2, c)


@max_pool_2x2.defjvp
def _max_pool_jvp(primals, tangents):
    (h_BxHxWxC,), (t_BxHxWxC,) = primals, tangents
    w, tw = _windows(h_BxHxWxC), _windows(t_BxHxWxC)
    out = jnp.max(w, axis=(2, 4))
    taken, tangent = jnp.zeros(out.shape, bool), jnp.zeros(out.shape, t_BxHxWxC.dtype)
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # row-major: the first maximum gives it
        here = (w[:, :, i, :, j] == out) & ~taken
        taken = taken | here
        tangent = jnp.where(here, tw[:, :, i, :, j], tangent)
    return out, tangent


def _conv_relu_pool(h_BxHxWxC: jax.Array, layer: dict, impl: str = "xla") -> tuple[jax.Array, jax.Array]:
    """(pre-activations, relu then 2x2 max-pool) of one 3x3 SAME convolution."""
    if impl == "xla":  # "SAME", as it always was (the same padding as `_conv`'s; kept for the program's bits)
        pre = jax.lax.conv_general_dilated(h_BxHxWxC, layer["kernel"], (1, 1), "SAME",
                                           dimension_numbers=DIMENSIONS) + layer["bias"]
    else:
        pre = _conv(h_BxHxWxC, layer["kernel"], 1, impl) + layer["bias"]
    return pre, max_pool_2x2(jax.nn.relu(pre))


@dataclass(frozen=True)
class _ImageModel:
    """What every conv net shares: its options, and a check that n_in is an image shape
    (H, W, C) with H and W at least `min_side`."""

    width: int
    n_in: tuple[int, int, int]
    n_out: int
    init_scheme: str = "torch"
    conv_impl: str = "xla"  # how convolutions are computed (`_conv`; CONV_IMPLS)
    kind: ClassVar[str] = ""
    min_side: ClassVar[int] = 4
    images: ClassVar[bool] = True  # a capability: takes (H, W, C) images
    cpu_conv_impl: ClassVar[str] = "im2col"  # --conv-impl auto on a CPU: the faster in the trainer's loop

    @classmethod
    def build(cls, width: int, n_in: int | tuple[int, ...], n_out: int, init: str, depth: int, conv_impl: str):
        """The model of the sweep's options (`make_model`); a conv net has no --depth."""
        return cls(width, tuple(n_in) if not isinstance(n_in, int) else n_in, n_out, init, conv_impl)

    def __post_init__(self):
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}, got {self.conv_impl!r}")
        shape = tuple(self.n_in) if not isinstance(self.n_in, int) else (self.n_in,)
        if len(shape) != 3 or min(shape[:2]) < self.min_side:
            raise ValueError(f"a {self.kind} needs images (H, W, C) of at least {self.min_side}x{self.min_side}, "
                             f"got {self.n_in}")
        if self.width < 1:
            raise ValueError(f"a {self.kind} needs width >= 1, got {self.width}")
        object.__setattr__(self, "n_in", tuple(int(v) for v in shape))

    def options(self) -> dict:
        # conv_impl only where it is not the default: checkpoints made before it still match
        return {"kind": self.kind, "width": self.width, "n_in": list(self.n_in), "n_out": self.n_out,
                "init": self.init_scheme, **({"conv_impl": self.conv_impl} if self.conv_impl != "xla" else {})}


@dataclass(frozen=True)
class CNN(_Stateless, _ImageModel):
    """Two 3x3 conv layers of `width` channels (SAME padding), each ReLU then 2x2
    max-pooling, and a linear readout; no normalization; PyTorch's default init per
    layer (fan_in = 3·3·C_in for a conv). `n_in` is the image shape (H, W, C), H and
    W at least 4. Hashable: a static argument of compiled programs."""

    kind: ClassVar[str] = "cnn"
    layers: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "readout")

    def init(self, key: jax.Array) -> dict:
        height, wide, c_in = self.n_in
        fan_ins = {"conv1": 9 * c_in, "conv2": 9 * self.width,
                   "readout": (height // 4) * (wide // 4) * self.width}
        shapes = {"conv1": (3, 3, c_in, self.width), "conv2": (3, 3, self.width, self.width),
                  "readout": (fan_ins["readout"], self.n_out)}
        params = {}
        for i, name in enumerate(self.layers):  # one key per layer, by position
            k_kernel, k_bias = jax.random.split(jax.random.fold_in(key, i))
            kernel_init, bias_init = _layer_init(self.init_scheme, fan_ins[name])
            params[name] = {"kernel": kernel_init(k_kernel, shapes[name], jnp.float32),
                            "bias": bias_init(k_bias, shapes[name][-1:], jnp.float32)}
        return params

    def _forward(self, params: dict, x_BxHxWxC: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
        pres, h = [], x_BxHxWxC
        for name in self.layers[:-1]:
            pre, h = _conv_relu_pool(h, params[name], self.conv_impl)
            pres.append(pre)
        logits = _flat(h) @ params["readout"]["kernel"] + params["readout"]["bias"]
        return tuple(pres), logits

    def apply(self, params: dict, x_BxHxWxC: jax.Array, state: dict | None = None) -> jax.Array:
        """Logits, shape (B, n_out)."""
        return self._forward(params, x_BxHxWxC)[1]

    def preactivations(self, params: dict, x_BxHxWxC: jax.Array, state: dict | None = None
                       ) -> tuple[jax.Array, ...]:
        """Each conv layer's pre-activations, one unit per (position, channel): shapes
        (B, H·W·width) and (B, H/2·W/2·width)."""
        return tuple(_flat(p) for p in self._forward(params, x_BxHxWxC)[0])


# -- conv nets with BatchNorm: the CIFAR VGGs and ResNet-18 -----------------------------------

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # torch's convention: running = (1 - 0.1)·running + 0.1·batch (flax's momentum 0.9)


def _batch_norm(z_BxHxWxC: jax.Array, params: dict, stats: dict, train: bool,
                weights_B: jax.Array | None) -> tuple[jax.Array, dict]:
    """torch's BatchNorm2d, per channel over examples and positions. Training: normalize
    with the batch's mean and biased variance (examples of weight 0, the padding of a
    short last minibatch, left out) and move the running statistics, the variance's by
    the unbiased batch variance; inference: normalize with the running statistics.
    Returns (output, statistics after)."""
    if train:
        w = jnp.ones(z_BxHxWxC.shape[:1], z_BxHxWxC.dtype) if weights_B is None else weights_B
        w_Bx1x1x1 = w.astype(z_BxHxWxC.dtype)[:, None, None, None]
        count = jnp.sum(w_Bx1x1x1) * z_BxHxWxC.shape[1] * z_BxHxWxC.shape[2]
        mean = jnp.sum(w_Bx1x1x1 * z_BxHxWxC, axis=(0, 1, 2)) / count
        var = jnp.sum(w_Bx1x1x1 * jnp.square(z_BxHxWxC - mean), axis=(0, 1, 2)) / count
        unbiased = var * count / jnp.maximum(count - 1, 1)
        stats = {"mean": (1 - BN_MOMENTUM) * stats["mean"] + BN_MOMENTUM * mean,
                 "var": (1 - BN_MOMENTUM) * stats["var"] + BN_MOMENTUM * unbiased}
    else:
        mean, var = stats["mean"], stats["var"]
    return (z_BxHxWxC - mean) * (params["scale"] * jax.lax.rsqrt(var + BN_EPS)) + params["bias"], stats


def _conv_bn(h_BxHxWxC: jax.Array, conv: dict, bn: dict, bn_stats: dict, stride: int, train: bool,
             weights_B: jax.Array | None, impl: str = "xla") -> tuple[jax.Array, dict]:
    """A convolution's parameters `conv` (torch's padding: (k-1)/2 zeros each side; its
    bias if it has one; computed as `impl` says) then a BatchNorm's, `bn`, with its
    running statistics `bn_stats`: (pre-activations, the BatchNorm's statistics after)."""
    z = _conv(h_BxHxWxC, conv["kernel"], stride, impl)
    if "bias" in conv:
        z = z + conv["bias"]
    return _batch_norm(z, bn, bn_stats, train, weights_B)


def _bn_params(channels: int) -> dict:
    return {"scale": jnp.ones(channels, jnp.float32), "bias": jnp.zeros(channels, jnp.float32)}


@dataclass(frozen=True)
class _Draw:
    """A weight to be drawn at init: its shape, its layer's fan-in and fan-out, and
    whether it is a bias."""

    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    bias: bool = False


def _layer(shape: tuple[int, ...], bias: bool = True) -> dict:
    """One layer's kernel (dense (in, out) or HWIO conv) and bias, to be drawn."""
    field = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * field, shape[-1] * field
    return {"kernel": _Draw(shape, fan_in, fan_out), **({"bias": _Draw(shape[-1:], fan_in, fan_out, True)}
                                                       if bias else {})}


TRUNCATED_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2], as flax's variance_scaling


def _draw_all(key: jax.Array, tree: dict, scheme: str) -> dict:
    """`tree` with every `_Draw` leaf drawn, all from one random draw: XLA's CPU backend
    is slow to compile random calls, and ResNet-18's vmapped init drawn layer by layer
    took 21.5 s of CPU to compile, in one draw 1.3 s. torch: every kernel and bias U(±1/√fan_in); lecun,
    he: kernels truncated normal of variance 1/fan_in, 2/fan_in; xavier: kernels uniform
    of variance 2/(fan_in + fan_out); zero biases but for torch."""
    leaves, treedef = jax.tree.flatten(tree)
    drawn = [d for d in leaves if isinstance(d, _Draw) and (scheme == "torch" or not d.bias)]
    total = sum(math.prod(d.shape) for d in drawn)
    if scheme in ("torch", "xavier"):
        base = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
    else:
        base = jax.random.truncated_normal(key, -2.0, 2.0, (total,), jnp.float32)
    scale = {"torch": lambda d: d.fan_in**-0.5, "lecun": lambda d: d.fan_in**-0.5 / TRUNCATED_STD,
             "he": lambda d: (2 / d.fan_in) ** 0.5 / TRUNCATED_STD,
             "xavier": lambda d: (6 / (d.fan_in + d.fan_out)) ** 0.5}[scheme]
    out, at = [], 0
    for leaf in leaves:
        if not isinstance(leaf, _Draw):
            out.append(leaf)
        elif scheme != "torch" and leaf.bias:
            out.append(jnp.zeros(leaf.shape, jnp.float32))
        else:
            size = math.prod(leaf.shape)
            out.append(base[at: at + size].reshape(leaf.shape) * scale(leaf))
            at += size
    return jax.tree.unflatten(treedef, out)


class _BatchNormNet(_ImageModel):
    """The protocol's methods of a conv net with BatchNorm, from its `_forward(params,
    state, x, trainable, weights)` -> (pre-activations, logits, statistics after)."""

    def init_state(self) -> dict:
        """Mean 0 and variance 1 for each BatchNorm of the parameters (a part with a "scale")."""
        norms = {layer: {name: part["scale"].shape for name, part in parts.items()
                         if isinstance(part, dict) and "scale" in part}
                 for layer, parts in jax.eval_shape(self.init, jax.random.PRNGKey(0)).items()}
        return {layer: {name: {"mean": jnp.zeros(shape, jnp.float32), "var": jnp.ones(shape, jnp.float32)}
                        for name, shape in bns.items()} for layer, bns in norms.items() if bns}

    def _stats(self, state: dict | None) -> dict:
        if not state:
            raise ValueError(f"a {self.kind} applies with its BatchNorm running statistics: pass its state")
        return state

    def apply(self, params: dict, x_BxHxWxC: jax.Array, state: dict | None = None) -> jax.Array:
        """Logits, shape (B, n_out), in inference mode."""
        return self._forward(params, self._stats(state), x_BxHxWxC, (), None)[1]

    def apply_train(self, params: dict, state: dict, x_BxHxWxC: jax.Array, trainable: tuple[str, ...],
                    weights_B: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """Logits in training mode for the `trainable` layers (inference mode for the
        others), and the running statistics after."""
        _, logits, state = self._forward(params, self._stats(state), x_BxHxWxC, tuple(trainable), weights_B)
        return logits, state

    def preactivations(self, params: dict, x_BxHxWxC: jax.Array, state: dict | None = None
                       ) -> tuple[jax.Array, ...]:
        """Each ReLU's input (after BatchNorm, and the shortcut in a ResNet block), one
        unit per (position, channel), in inference mode."""
        return tuple(_flat(p) for p in self._forward(params, self._stats(state), x_BxHxWxC, (), None)[0])


@dataclass(frozen=True)
class _VGG(_BatchNormNet):
    """A CIFAR VGG: 3x3 conv (with bias) + BatchNorm + ReLU per layer, 2x2 max-pools
    ("M" in `plan`, channels in units of width), then the readout on the flattened map.
    Five pools: images of at least 32x32."""

    plan: ClassVar[tuple] = ()
    min_side: ClassVar[int] = 32

    @property
    def layers(self) -> tuple[str, ...]:
        return (*(f"conv{i}" for i in range(1, sum(c != "M" for c in self.plan) + 1)), "readout")

    def _channels(self) -> tuple[int, ...]:
        return tuple(c * self.width for c in self.plan if c != "M")

    def init(self, key: jax.Array) -> dict:
        params, c_in = {}, self.n_in[2]
        for name, c_out in zip(self.layers, self._channels()):
            params[name] = {"conv": _layer((3, 3, c_in, c_out)), "bn": _bn_params(c_out)}
            c_in = c_out
        height, wide, _ = self.n_in
        params["readout"] = _layer(((height // 32) * (wide // 32) * c_in, self.n_out))
        return _draw_all(key, params, self.init_scheme)

    def _forward(self, params, state, x_BxHxWxC, trainable, weights_B):
        pres, after, h = [], {}, x_BxHxWxC
        names = iter(self.layers)
        for item in self.plan:
            if item == "M":
                h = max_pool_2x2(h)
                continue
            name = next(names)
            p = params[name]
            pre, stats = _conv_bn(h, p["conv"], p["bn"], state[name]["bn"], 1, name in trainable, weights_B,
                                  self.conv_impl)
            pres.append(pre)
            after[name] = {"bn": stats}
            h = jax.nn.relu(pre)
        return tuple(pres), _flat(h) @ params["readout"]["kernel"] + params["readout"]["bias"], after


@dataclass(frozen=True)
class VGG11(_VGG):
    kind: ClassVar[str] = "vgg11"
    plan: ClassVar[tuple] = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


@dataclass(frozen=True)
class VGG16(_VGG):
    kind: ClassVar[str] = "vgg16"
    plan: ClassVar[tuple] = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")


@dataclass(frozen=True)
class ResNet18(_BatchNormNet):
    """The CIFAR ResNet-18: `stem` (3x3 conv, BatchNorm, ReLU), BasicBlocks `block1` ...
    `block8` (conv-BN-ReLU, conv-BN, plus the shortcut, ReLU), global average pooling,
    readout. Convolutions have no bias."""

    kind: ClassVar[str] = "resnet18"
    min_side: ClassVar[int] = 1
    cpu_conv_impl: ClassVar[str] = "canonical"  # 1.5x im2col at width 16, a tie at 64 (PERFORMANCE.md)
    layers: ClassVar[tuple[str, ...]] = ("stem", *(f"block{i}" for i in range(1, 9)), "readout")

    def _blocks(self) -> tuple[tuple[str, int, int, int], ...]:
        """(name, input channels, channels, stride) of each block: two per stage."""
        out, c_in = [], self.width
        for stage in range(4):
            planes = self.width * 2**stage
            for j in range(2):
                out.append((f"block{2 * stage + j + 1}", c_in, planes, 2 if stage > 0 and j == 0 else 1))
                c_in = planes
        return tuple(out)

    def init(self, key: jax.Array) -> dict:
        width = self.width
        params = {"stem": {"conv": _layer((3, 3, self.n_in[2], width), bias=False), "bn": _bn_params(width)}}
        for name, c_in, planes, stride in self._blocks():
            params[name] = {"conv1": _layer((3, 3, c_in, planes), bias=False), "bn1": _bn_params(planes),
                            "conv2": _layer((3, 3, planes, planes), bias=False), "bn2": _bn_params(planes)}
            if stride != 1 or c_in != planes:
                params[name] |= {"shortcut": _layer((1, 1, c_in, planes), bias=False),
                                 "shortcut_bn": _bn_params(planes)}
        params["readout"] = _layer((8 * width, self.n_out))
        return _draw_all(key, params, self.init_scheme)

    def _forward(self, params, state, x_BxHxWxC, trainable, weights_B):
        impl = self.conv_impl
        stem = params["stem"]
        pre, stats = _conv_bn(x_BxHxWxC, stem["conv"], stem["bn"], state["stem"]["bn"], 1, "stem" in trainable,
                              weights_B, impl)
        pres, after, h = [pre], {"stem": {"bn": stats}}, jax.nn.relu(pre)
        for name, _, _, stride in self._blocks():
            p, s, train = params[name], state[name], name in trainable
            z1, s1 = _conv_bn(h, p["conv1"], p["bn1"], s["bn1"], stride, train, weights_B, impl)
            z2, s2 = _conv_bn(jax.nn.relu(z1), p["conv2"], p["bn2"], s["bn2"], 1, train, weights_B, impl)
            after[name] = {"bn1": s1, "bn2": s2}
            shortcut = h
            if "shortcut" in p:
                shortcut, after[name]["shortcut_bn"] = _conv_bn(h, p["shortcut"], p["shortcut_bn"], s["shortcut_bn"],
                                                                stride, train, weights_B, impl)
            pres += [z1, z2 + shortcut]
            h = jax.nn.relu(pres[-1])
        logits = h.mean(axis=(1, 2)) @ params["readout"]["kernel"] + params["readout"]["bias"]
        return tuple(pres), logits, after


CONV_MODELS = {m.kind: m for m in (CNN, VGG11, VGG16, ResNet18)}
# kind -> model class. A class of the protocol with `kind`, `images` (its capability:
# image inputs or vectors) and `build(width, n_in, n_out, init, depth, conv_impl)`.
MODELS: dict[str, type] = {"mlp": MLP, **CONV_MODELS}


def register_model(cls: type) -> type:
    """Make a model class a kind every tool knows (--model KIND); usable as a decorator."""
    if not (isinstance(getattr(cls, "kind", None), str) and cls.kind and hasattr(cls, "build")):
        raise ValueError("a model class needs a `kind` name and a `build` classmethod")
    MODELS[cls.kind] = cls
    return cls


def takes_images(kind: str) -> bool:
    """Whether models of `kind` take images (N, H, W, C) rather than vectors."""
    return bool(getattr(MODELS.get(kind), "images", False))


def make_model(kind: str, width: int, n_in: int | tuple[int, ...], n_out: int, init: str = "torch",
               depth: int = 1, conv_impl: str = "xla") -> Model:
    """A model of `kind` (one of MODELS) from the sweep's options."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
    return MODELS[kind].build(width, n_in, n_out, init, depth, conv_impl)


def model_from_options(options: dict) -> Model:
    """The model `options()` describes (e.g. as a checkpoint recorded it)."""
    o = dict(options)
    return make_model(o.pop("kind"), o["width"], o["n_in"], o["n_out"], o.get("init", "torch"), o.get("depth", 1),
                      o.get("conv_impl", "xla"))


def n_outputs(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


# -- what the rest of advjax asks of any model ------------------------------------------------

def input_shape(model: Model) -> tuple[int, ...]:
    """One example's shape: (d,) for vectors, (H, W, C) for images."""
    return (model.n_in,) if isinstance(model.n_in, int) else tuple(model.n_in)


def readout(model: Model) -> str:
    return model.layers[-1]


def feature_layers(model: Model) -> tuple[str, ...]:
    return model.layers[:-1]


def param_shapes(model: Model) -> dict:
    """One seed's parameter shapes and dtypes, without computing anything (traced once
    per model: a trace of flax's init takes tens of milliseconds, and the bench's torch
    rows asked once per layer of every seed's network)."""
    return jax.tree.map(lambda s: s, _param_shapes(model))  # a fresh dict for each caller


@functools.lru_cache(maxsize=256)
def _param_shapes(model: Model) -> dict:
    return jax.eval_shape(model.init, jax.random.PRNGKey(0))


def has_state(model: Model) -> bool:
    """Whether the model carries running statistics (BatchNorm)."""
    return bool(jax.tree.leaves(jax.eval_shape(model.init_state)))


def initial_states(model: Model, n_seeds: int) -> dict:
    """Every seed's running statistics at init, seed axis first (host arrays)."""
    return jax.tree.map(lambda a: np.repeat(np.asarray(a)[None], n_seeds, axis=0), model.init_state())


@functools.lru_cache(maxsize=256)
def n_parameters(model: Model) -> int:
    """Parameters of one seed (every layer, weights and biases)."""
    return int(sum(np.prod(s.shape) for s in jax.tree.leaves(param_shapes(model))))


@functools.lru_cache(maxsize=256)
def activations_per_example(model: Model) -> int:
    """ReLU units one example goes through: the floats of activations it adds."""
    x = jax.ShapeDtypeStruct((1, *input_shape(model)), jnp.float32)
    pre = jax.eval_shape(model.preactivations, param_shapes(model), x, jax.eval_shape(model.init_state))
    return int(sum(np.prod(p.shape[1:]) for p in pre))


IM2COL_PATCH_COPIES = 9  # a 3x3 convolution's im2col patches: 9 floats for each of its input's


def forward_floats_per_example(model: Model) -> int:
    """Floats one example's forward pass holds: its activation units, and with im2col
    convolutions their patches, counted as IM2COL_PATCH_COPIES per unit (an upper bound:
    no conv here has more input than output floats at its output's positions). canonical
    holds what xla does: XLA:CPU's temporary buffers for a ResNet-18 step (width 16, batch
    32, in a loop) measured 3.43 floats per example and unit against xla's 3.42."""
    units = activations_per_example(model)
    return units * (1 + IM2COL_PATCH_COPIES) if getattr(model, "conv_impl", "xla") == "im2col" else units


def zero_readout(model: Model, params: dict) -> dict:
    """The start of Experiment 3: features kept, readout weights and bias set to 0."""
    return {**params, readout(model): jax.tree.map(jnp.zeros_like, params[readout(model)])}
