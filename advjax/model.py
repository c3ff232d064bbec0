"""N_p: one hidden layer of p ReLU units with biases, then a linear readout.

The trainer sees only a params pytree ({layer: {"kernel", "bias"}}) and `apply`, so
deeper models can come later without touching it. Layer names are the paper's terms:
`hidden` (the features) and `readout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

INIT_SCHEMES = ("torch", "lecun", "he", "xavier")
FEATURES, READOUT = "hidden", "readout"


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


class _TwoLayer(nn.Module):
    width: int
    n_out: int
    scheme: str

    @nn.compact
    def __call__(self, x_BxD: jax.Array) -> jax.Array:
        h_BxP = nn.relu(_dense(self.width, x_BxD.shape[-1], self.scheme, FEATURES)(x_BxD))
        return _dense(self.n_out, self.width, self.scheme, READOUT)(h_BxP)


@dataclass(frozen=True)
class MLP:
    """N_p. Hashable, so it can be a static argument of a compiled program.

    n_out is 1 for binary tasks (one logit, logistic loss) and K for K classes.
    """

    width: int
    n_in: int
    n_out: int
    init_scheme: str = "torch"

    @property
    def _module(self) -> _TwoLayer:
        return _TwoLayer(self.width, self.n_out, self.init_scheme)

    def init(self, key: jax.Array) -> dict:
        return self._module.init(key, jnp.zeros((1, self.n_in)))["params"]

    def apply(self, params: dict, x_BxD: jax.Array) -> jax.Array:
        """Logits, shape (B, n_out)."""
        return self._module.apply({"params": params}, x_BxD)

    def hidden(self, params: dict, x_BxD: jax.Array) -> jax.Array:
        """The features: post-ReLU activations, shape (B, p)."""
        layer = params[FEATURES]
        return jax.nn.relu(x_BxD @ layer["kernel"] + layer["bias"])


def n_outputs(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


def zero_readout(params: dict) -> dict:
    """The start of Experiment 3: features kept, readout weights and bias set to 0."""
    return {**params, READOUT: jax.tree.map(jnp.zeros_like, params[READOUT])}
