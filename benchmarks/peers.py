"""The peers fastgan is timed against on the same cores, each training exactly the seed's GAN
(G 100 -> 128 ReLU -> 784 sigmoid, D 784 -> 128 ReLU -> 1, weights N(0, 1/sqrt(in/2)) stored
(in, out), biases 0, z ~ U(-1, 1) fresh for each step, mean sigmoid cross-entropy on logits,
non-saturating G loss, Adam 1e-3 (0.9, 0.999, 1e-8) per network, one D step then one G step):

  torch_peer   the classic plain-PyTorch loop a user writes (wiseodd's vanilla_gan/gan_pytorch.py
               style): parameters as leaf tensors, autograd, two torch.optim.Adam
  jax_peer     JAX: the same step under `jit`, or `jit` of a `lax.scan` over many steps, or
               `vmap` over several GANs at once (the optional `jax` extra; no optax)

Each `make_*` returns run(k): k iterations on the CPU, returning when they are done. The data
draw is the peers' own (uniform indices with replacement): its cost is part of every loop.
"""

import math

import torch

Z, H, X = 100, 128, 784
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


def make_torch_peer(images, batch, seed=0):
    g = torch.Generator().manual_seed(seed)

    def weight(i, o):
        return (torch.randn(i, o, generator=g) / math.sqrt(i / 2)).requires_grad_()

    def bias(n):
        return torch.zeros(n, requires_grad=True)

    G = [weight(Z, H), bias(H), weight(H, X), bias(X)]
    D = [weight(X, H), bias(H), weight(H, 1), bias(1)]
    opt_g, opt_d = torch.optim.Adam(G, lr=LR), torch.optim.Adam(D, lr=LR)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def gen(z):
        return torch.sigmoid(torch.relu(z @ G[0] + G[1]) @ G[2] + G[3])

    def disc(x):
        return torch.relu(x @ D[0] + D[1]) @ D[2] + D[3]

    def run(k):
        for _ in range(k):
            x = images[torch.randint(len(images), (batch,))]
            z = torch.rand(batch, Z) * 2 - 1
            real, fake = disc(x), disc(gen(z).detach())
            d_loss = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            fake = disc(gen(torch.rand(batch, Z) * 2 - 1))
            g_loss = bce(fake, torch.ones_like(fake))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
        return d_loss, g_loss

    return run


def make_jax_peer(images, batch, mode="scan", runs=1, seed=0, scan_len=100):
    """mode "jit": one jitted step per iteration; "scan": jit of lax.scan over scan_len steps;
    runs > 1: vmap of the scanned step over that many GANs (each its own weights and noise)."""
    import jax
    import jax.numpy as jnp

    data = jnp.asarray(images.numpy())

    def init(key):
        k = jax.random.split(key, 4)

        def w(key, i, o):
            return jax.random.normal(key, (i, o), jnp.float32) / math.sqrt(i / 2)

        G = {"W1": w(k[0], Z, H), "b1": jnp.zeros(H), "W2": w(k[1], H, X), "b2": jnp.zeros(X)}
        D = {"W1": w(k[2], X, H), "b1": jnp.zeros(H), "W2": w(k[3], H, 1), "b2": jnp.zeros(1)}
        zeros = jax.tree_util.tree_map(jnp.zeros_like, (G, D))
        return {"G": G, "D": D, "m": zeros, "v": zeros, "t": jnp.zeros((), jnp.float32), "key": key}

    def gen(G, z):
        return jax.nn.sigmoid(jax.nn.relu(z @ G["W1"] + G["b1"]) @ G["W2"] + G["b2"])

    def disc(D, x):
        return jax.nn.relu(x @ D["W1"] + D["b1"]) @ D["W2"] + D["b2"]

    def bce(logits, target):
        return jnp.mean(jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))

    def d_loss(D, G, x, z):
        return bce(disc(D, x), 1.0) + bce(disc(D, gen(G, z)), 0.0)

    def g_loss(G, D, z):
        return bce(disc(D, gen(G, z)), 1.0)

    def adam(p, g, m, v, t):
        m = jax.tree_util.tree_map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
        step = LR * jnp.sqrt(1 - B2**t) / (1 - B1**t)
        p = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + EPS * jnp.sqrt(1 - B2**t)), p, m, v)
        return p, m, v

    def step(s, _=None):
        key, k_idx, k_zd, k_zg = jax.random.split(s["key"], 4)
        x = data[jax.random.randint(k_idx, (batch,), 0, data.shape[0])]
        t = s["t"] + 1
        gD = jax.grad(d_loss)(s["D"], s["G"], x, jax.random.uniform(k_zd, (batch, Z), minval=-1.0, maxval=1.0))
        D, mD, vD = adam(s["D"], gD, s["m"][1], s["v"][1], t)
        gG = jax.grad(g_loss)(s["G"], D, jax.random.uniform(k_zg, (batch, Z), minval=-1.0, maxval=1.0))
        G, mG, vG = adam(s["G"], gG, s["m"][0], s["v"][0], t)
        return {"G": G, "D": D, "m": (mG, mD), "v": (vG, vD), "t": t, "key": key}, None

    keys = jax.random.split(jax.random.PRNGKey(seed), runs)
    if mode == "jit":
        state, fn = init(keys[0]), jax.jit(lambda s: step(s)[0])
    else:
        scanned = lambda s: jax.lax.scan(step, s, None, length=scan_len)[0]  # noqa: E731
        if runs == 1:
            state, fn = init(keys[0]), jax.jit(scanned)
        else:
            state, fn = jax.vmap(init)(keys), jax.jit(jax.vmap(scanned))
    holder = [jax.block_until_ready(fn(state))]  # compiled here, not in the timing
    per_call = 1 if mode == "jit" else scan_len

    def run(k):
        if k % per_call:
            raise ValueError(f"the JAX {mode} peer runs whole scans of {per_call} iterations; got {k}")
        s = holder[0]
        for _ in range(k // per_call):
            s = fn(s)
        holder[0] = jax.block_until_ready(s)

    return run
