"""Models: the protocol every part of advjax sees, and its one kind so far, the MLP.

A model is a hashable description (a frozen dataclass, static under `jit`) with

- `init(key) -> params`: one seed's parameters, a dict {layer: {"kernel", "bias"}};
- `apply(params, x_BxD) -> logits_BxK`;
- `layers`: the layer names in order; the last is the readout, every other layer is a
  feature layer;
- `preactivations(params, x_BxD)`: the pre-activations of each ReLU layer, in order
  (what the measures count active units and linear regions from);
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
MODEL_KINDS = ("mlp", "cnn")
CONV_KINDS = ("cnn",)  # the kinds that need image inputs (N, H, W, C)


class Model(Protocol):
    kind: ClassVar[str]
    n_in: int | tuple[int, ...]  # one example's shape: d, or (H, W, C) for images
    n_out: int  # logits: 1 for binary tasks, K for K classes

    @property
    def layers(self) -> tuple[str, ...]: ...
    def init(self, key: jax.Array) -> dict: ...
    def apply(self, params: dict, x_BxD: jax.Array) -> jax.Array: ...
    def preactivations(self, params: dict, x_BxD: jax.Array) -> tuple[jax.Array, ...]: ...
    def options(self) -> dict: ...


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
class MLP:
    """`depth` hidden ReLU layers of `width` units and a linear readout; PyTorch's
    nn.Linear init per layer by default. Depth 1 is N_p. Hashable: a static argument
    of compiled programs."""

    width: int
    n_in: int
    n_out: int
    init_scheme: str = "torch"
    depth: int = 1
    kind: ClassVar[str] = "mlp"

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

    def apply(self, params: dict, x_BxD: jax.Array) -> jax.Array:
        """Logits, shape (B, n_out); images (B, H, W, C) are flattened first."""
        return self._module.apply({"params": params}, _flat(x_BxD))

    def preactivations(self, params: dict, x_BxD: jax.Array) -> tuple[jax.Array, ...]:
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


def _conv_relu_pool(h_BxHxWxC: jax.Array, layer: dict) -> tuple[jax.Array, jax.Array]:
    """(pre-activations, relu then 2x2 max-pool) of one 3x3 SAME convolution."""
    pre = jax.lax.conv_general_dilated(h_BxHxWxC, layer["kernel"], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + layer["bias"]
    return pre, nn.max_pool(jax.nn.relu(pre), (2, 2), strides=(2, 2))


@dataclass(frozen=True)
class CNN:
    """Two 3x3 conv layers of `width` channels (SAME padding), each ReLU then 2x2
    max-pooling, and a linear readout; no normalization; PyTorch's default init per
    layer (fan_in = 3·3·C_in for a conv). `n_in` is the image shape (H, W, C), H and
    W at least 4. Hashable: a static argument of compiled programs."""

    width: int
    n_in: tuple[int, int, int]
    n_out: int
    init_scheme: str = "torch"
    kind: ClassVar[str] = "cnn"
    layers: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "readout")

    def __post_init__(self):
        shape = tuple(self.n_in) if not isinstance(self.n_in, int) else (self.n_in,)
        if len(shape) != 3 or min(shape[:2]) < 4 or self.width < 1:
            raise ValueError(f"a cnn needs images (H, W, C) with H, W >= 4 and width >= 1, got n_in "
                             f"{self.n_in}, width {self.width}")
        object.__setattr__(self, "n_in", tuple(int(v) for v in shape))

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
            pre, h = _conv_relu_pool(h, params[name])
            pres.append(pre)
        logits = _flat(h) @ params["readout"]["kernel"] + params["readout"]["bias"]
        return tuple(pres), logits

    def apply(self, params: dict, x_BxHxWxC: jax.Array) -> jax.Array:
        """Logits, shape (B, n_out)."""
        return self._forward(params, x_BxHxWxC)[1]

    def preactivations(self, params: dict, x_BxHxWxC: jax.Array) -> tuple[jax.Array, ...]:
        """Each conv layer's pre-activations, one unit per (position, channel): shapes
        (B, H·W·width) and (B, H/2·W/2·width)."""
        return tuple(_flat(p) for p in self._forward(params, x_BxHxWxC)[0])

    def options(self) -> dict:
        return {"kind": self.kind, "width": self.width, "n_in": list(self.n_in), "n_out": self.n_out,
                "init": self.init_scheme}


def make_model(kind: str, width: int, n_in: int | tuple[int, ...], n_out: int, init: str = "torch",
               depth: int = 1) -> Model:
    """A model of `kind` (one of MODEL_KINDS) from the sweep's options."""
    if kind == "mlp":
        return MLP(width, n_in if isinstance(n_in, int) else math.prod(n_in), n_out, init, depth)
    if kind == "cnn":
        return CNN(width, tuple(n_in) if not isinstance(n_in, int) else n_in, n_out, init)
    raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


def model_from_options(options: dict) -> Model:
    """The model `options()` describes (e.g. as a checkpoint recorded it)."""
    o = dict(options)
    return make_model(o.pop("kind"), o["width"], o["n_in"], o["n_out"], o.get("init", "torch"), o.get("depth", 1))


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
    """One seed's parameter shapes and dtypes, without computing anything."""
    return jax.eval_shape(model.init, jax.random.PRNGKey(0))


@functools.lru_cache(maxsize=256)
def n_parameters(model: Model) -> int:
    """Parameters of one seed (every layer, weights and biases)."""
    return int(sum(np.prod(s.shape) for s in jax.tree.leaves(param_shapes(model))))


@functools.lru_cache(maxsize=256)
def activations_per_example(model: Model) -> int:
    """ReLU units one example goes through: the floats of activations it adds."""
    x = jax.ShapeDtypeStruct((1, *input_shape(model)), jnp.float32)
    pre = jax.eval_shape(model.preactivations, param_shapes(model), x)
    return int(sum(np.prod(p.shape[1:]) for p in pre))


def zero_readout(model: Model, params: dict) -> dict:
    """The start of Experiment 3: features kept, readout weights and bias set to 0."""
    return {**params, readout(model): jax.tree.map(jnp.zeros_like, params[readout(model)])}
