"""Shared check of pathwise gradients against central differences (common random numbers)."""
import jax


def check_pathwise(f, x0: dict, h: float = 1e-5, rtol: float = 1e-5, floor: float = 1e-3):
    """``jax.grad(f)(x0)`` against central differences of ``f`` in each entry of ``x0``; each
    difference must exceed ``floor`` (a zero gradient cannot pass)."""
    grads = jax.grad(f)(x0)
    for n, v in x0.items():
        fd = (float(f(x0 | {n: v + h})) - float(f(x0 | {n: v - h}))) / (2 * h)
        assert abs(fd) > floor, n
        assert abs(float(grads[n]) - fd) <= rtol * abs(fd), (n, float(grads[n]), fd)
