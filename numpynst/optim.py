"""Optimizers on flat arrays, written once for NumPy and CuPy: gradient descent, Adam, L-BFGS.

One API for all three. The objective is ``fun(x) -> (f, g)`` with ``x`` a flat 1-D array, ``f`` a
0-d array and ``g`` a flat array like ``x``. An optimizer is a small object whose

    x_new, f_new, g_new = opt.step(fun, x, f, g)

takes one iteration from the point ``x`` (whose value and gradient the caller already has) and
returns the new point with its value and gradient, so nothing is evaluated twice. **Every step
costs exactly one evaluation of fun**, for all three optimizers: "iterations" and "function
evaluations" are the same count, and runs with the same budget cost the same time.

No host round trips. On CuPy, ``float(f)``, ``bool(f < g)`` or ``if f < g:`` on a device scalar
waits for the GPU to finish everything queued and copies the value back; one such sync per
iteration leaves the GPU idle between kernel launches. All decisions here — Armijo acceptance,
descent-direction fallback, curvature-pair rejection — are therefore made *on the device* with
``xp.where``: both outcomes are computed and the right one selected. The code is the same on
NumPy, where ``where`` simply costs a few vector operations. Python-side state is limited to
what does not depend on values (the Adam step counter).

Defaults for style transfer (:func:`make_optimizer`) assume pixel values on the 0..255 scale of
the Caffe-trained VGG's input: Adam's lr is a step size in pixel units, ~5 (a few grey levels per
step at the start, like lr=0.02 on a 0..1 scale); plain gradient descent has no scale-free
default (its step is lr times the gradient, whose size depends on the loss weights), so the caller
must give lr; L-BFGS needs no learning rate at all and keeps 10 curvature pairs.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from .backend import get_xp, to_host
from .checks import integer, positive_number
from .errors import ClusterLost, OptionError
from .layers.fast.parallel import one_blas_thread

Array = Any
Objective = Callable[[Array], tuple[Array, Array]]

OPTIMIZERS = ("gd", "adam", "lbfgs")
DEFAULT_ADAM_LR = 5.0
DEFAULT_LBFGS_HISTORY = 10
DEFAULT_LBFGS_GROWTH = 4.0


def _check_unit_interval(name: str, value: Any) -> float:
    """A float in [0, 1), or :class:`OptionError` naming the option."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not (0.0 <= v < 1.0):
        raise OptionError(f"{name} must be in [0, 1), got {value!r}")
    return v


def _check_flat(x: Array, g: Array) -> None:
    if x.ndim != 1 or tuple(g.shape) != tuple(x.shape):
        raise ValueError(f"optimizers work on flat arrays: x must be 1-D and g shaped like x, got "
                         f"x {tuple(x.shape)} and g {tuple(g.shape)}")


class Optimizer:
    """Base class: ``step(fun, x, f, g) -> (x_new, f_new, g_new)``, one evaluation of ``fun``.

    Optimizers with state (Adam's moments, L-BFGS's history) allocate it on the first step, on the
    device and in the dtype of ``x``; :meth:`reset` forgets it (e.g. before optimizing a
    different-sized image).
    """

    name = "optimizer"
    #: Whether the last step moved to its trial point (always, but for L-BFGS's rejected trials,
    #: where it is a 0-d device bool). :func:`minimize` uses it to keep per-point records aligned.
    accepted: Any = True

    def step(self, fun: Objective, x: Array, f: Array, g: Array) -> tuple[Array, Array, Array]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state, as if newly constructed."""

    #: The names of the state's arrays (device arrays, or None before the first step) and of its
    #: Python numbers; :meth:`state_dict` and :meth:`load_state` move exactly these.
    _arrays: tuple[str, ...] = ()
    _numbers: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """Everything a later :meth:`load_state` needs to continue bit for bit: ``{"name": ...}``
        plus the state's arrays copied to the host (NumPy, same dtype; absent before the first
        step) and its Python numbers. The settings (lr, betas, history length) are not state: the
        caller builds the optimizer with the same ones (a checkpoint keeps the run's options)."""
        out: dict[str, Any] = {"name": self.name}
        for key in self._arrays:
            value = getattr(self, key)
            if value is not None:
                out[key] = np.array(to_host(value), copy=True)
        out.update({key: getattr(self, key) for key in self._numbers})
        return out

    def _arrays_in(self, state: dict[str, Any]) -> list[str]:
        """The state's array names (all of :attr:`_arrays`, or none before a first step); ValueError
        for another optimizer's state or a partial one: half a state would silently change the run."""
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state of {state.get('name')!r} cannot continue {self.name!r}")
        present = [k for k in self._arrays if k in state]
        if present and len(present) != len(self._arrays):
            raise ValueError(f"{self.name} state is incomplete: has {present}, needs {list(self._arrays)}")
        return present

    def load_state(self, state: dict[str, Any], xp: Any = np) -> None:
        """Continue from ``state`` (a :meth:`state_dict`, possibly through a file), its arrays
        placed on ``xp`` (NumPy or CuPy) in their own dtype. An optimizer of another kind's state,
        or a partial one, is refused (ValueError): half a state would silently change the run."""
        present = self._arrays_in(state)
        self.reset()
        for key in present:
            setattr(self, key, xp.asarray(state[key]))
        for key in self._numbers:
            setattr(self, key, type(getattr(self, key))(state[key]))


class GradientDescent(Optimizer):
    """Plain gradient descent: ``x := x - lr * g``.

    Converges on a convex quadratic when lr < 2 / L (L the largest Hessian eigenvalue), at a rate
    1 - lr*mu per step: slow when the problem is ill-conditioned. Kept as the textbook baseline.
    """

    name = "gd"

    def __init__(self, lr: float) -> None:
        self.lr = positive_number("lr", lr)

    def step(self, fun, x, f, g):
        _check_flat(x, g)
        x_new = x - self.lr * g
        f_new, g_new = fun(x_new)
        return x_new, f_new, g_new


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction.

        m := beta1 m + (1 - beta1) g            (running mean of gradients)
        v := beta2 v + (1 - beta2) g^2          (running mean of squared gradients)
        m^ = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)     (undo the bias of the zero start)
        x := x - lr * m^ / (sqrt(v^) + eps)

    Each coordinate moves by about lr per step whatever the gradient's scale, so lr is in the
    units of x (pixel values for style transfer). m and v live on x's device; the step counter t
    is a Python int (it does not depend on any value, so reading it costs no sync).
    """

    name = "adam"
    _arrays = ("m", "v")
    _numbers = ("t",)

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.lr = positive_number("lr", lr)
        self.beta1 = _check_unit_interval("beta1", beta1)
        self.beta2 = _check_unit_interval("beta2", beta2)
        self.eps = positive_number("eps", eps)
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.m = None
        self.v = None

    def step(self, fun, x, f, g):
        _check_flat(x, g)
        xp = get_xp(x, g)
        if self.m is None:
            self.m = xp.zeros_like(x)
            self.v = xp.zeros_like(x)
        elif self.m.shape != x.shape or self.m.dtype != x.dtype or get_xp(self.m) is not xp:
            raise ValueError(f"Adam state was built for x of shape {self.m.shape} and dtype "
                             f"{self.m.dtype}, got {x.shape} {x.dtype}; call reset() first")
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m *= b1
        self.m += (1.0 - b1) * g
        self.v *= b2
        self.v += (1.0 - b2) * (g * g)
        # Python floats keep float32 arrays float32 (NEP 50) and cost no device work.
        c1 = 1.0 / (1.0 - b1 ** self.t)
        c2 = 1.0 / (1.0 - b2 ** self.t)
        x_new = x - self.lr * (self.m * c1) / (xp.sqrt(self.v * c2) + self.eps)
        f_new, g_new = fun(x_new)
        return x_new, f_new, g_new


class LBFGS(Optimizer):
    """Limited-memory BFGS with a backtracking Armijo line search, branch-free on the device.

    **One step = one evaluation of fun.** A classic L-BFGS iteration runs a line search that may
    evaluate several trial points, deciding on the host after each whether to accept it. Here each
    :meth:`step` evaluates exactly one trial point and decides on the device; a rejected trial
    leaves x, f, g and the history unchanged and shrinks the step multiplier for the next call,
    which then retries along the same direction. So a backtracking line search is spread over
    consecutive steps, and ``iterations`` counts function evaluations, as in the Gatys-style NST
    runs whose L-BFGS ``max_iter`` counts evaluations. This keeps the GPU busy: no value ever
    crosses to the host.

    The step, from x with value f and gradient g:

    1. **Direction** d = -H g by the two-loop recursion over the stored pairs
       (s_i, y_i) = (x_{i+1} - x_i, g_{i+1} - g_i), newest first, with rho_i = 1 / (s_i . y_i):

           q = g;  for i newest..oldest:  a_i = rho_i s_i.q;   q -= a_i y_i
           r = gamma q;  for i oldest..newest:  b = rho_i y_i.r;  r += (a_i - b) s_i
           d = -r

       H0 = gamma I with gamma = s.y / y.y of the newest pair (the scale of the inverse Hessian
       along the last step). With no pair yet, gamma = 1 / max(1, |g|_1), so the first trial step
       moves x by at most 1 in the 1-norm: a safe, scale-free start.
       The history is a ring of m + 1 preallocated slots per S and Y (:meth:`_init_state`);
       row i of the history (**newest first**) is slot (head - i) mod (m + 1). Empty rows have
       rho = 0, which makes a_i = b = 0: they contribute nothing, so the recursion always runs
       over all m rows with no host-side test of how many are filled.
    2. **Descent safeguard**: if g.d >= 0 (or is NaN), use d = -gamma g instead (``where``).
    3. **Trial**: x_t = x + t d, (f_t, g_t) = fun(x_t). t is a 0-d device array, 1 after an
       accepted step.
    4. **Armijo test on the device**: accepted = f_t <= f + c1 t g.d, and f_t, g_t finite. Then
       x, f, g = where(accepted, trial, old).
    5. **Step multiplier**: accepted -> t = 1 once a curvature pair is stored, and t = growth * t
       while none is (extrapolation, as the line searches of Nocedal & Wright ch. 3/7 and SciPy
       do within one iteration); rejected -> t = the minimizer of the quadratic through f, g.d
       and f_t, clipped to [0.1 t, 0.5 t] (0.1 t when f_t or g_t is not finite).
       Why grow: at a non-convex start (style transfer from noise) the cost curves *downwards*
       along -g, so every accepted pair fails the curvature test below, gamma keeps its bootstrap
       value 1/|g|_1 (pixels move by ~1/n each) and, with t reset to 1, the run stalls for good
       (J 3.3e5 -> 3.3e5 in 120 steps on tutorial 6's texture). Growing t by 4 per accepted step
       reaches a useful step size in a few steps (J 3.3e5 -> 1.0 on that texture, Adam 62); an
       overshoot costs one rejected trial, after which the quadratic fit shrinks t again.
    6. **History**: an accepted pair (s, y) = (t d, g_t - g) becomes row 0 (the others move one
       row down, the oldest drops out) only if it satisfies the curvature condition
       s.y > eps |s| |y| — i.e. cos(s, y) > eps, which keeps H positive definite; a pair failing
       it, or a rejected trial, leaves the history untouched. (The test is on the cosine rather
       than s.y > eps |y|^2 because the cosine is invariant to rescaling f and x: pixel-scale
       images and losses of 1e10 would otherwise move the threshold by orders of magnitude.)
       No row moves in memory: the trial pair is written into the ring's spare slot every step
       and a push only advances the ring's head (a ``where`` on a 0-d device integer).

    Costs per step, beyond the evaluation: about 4m dot products and 4m axpys of length n for the
    recursion and two vector copies into the ring, in two preallocated vectors: the only new
    vector of a step is the trial point handed to ``fun``. The new point is returned in the
    trial's vectors (``x_t`` and ``fun``'s gradient, the old values copied back into them where a
    trial is rejected), so ``fun`` must return a new gradient array at each call (as every
    objective here does; the caller keeps the previous one).

    Args:
        history: m, the number of curvature pairs kept (>= 1).
        c1: Armijo sufficient-decrease constant, in (0, 1).
        curvature_eps: the cosine threshold of step 6; default sqrt(machine epsilon of x's dtype)
            (1.5e-8 for float64, 3.5e-4 for float32, where s.y is computed only to ~1e-4 relative).
        growth: factor by which an accepted step grows t while no curvature pair is stored
            (>= 1; 1 turns the extrapolation off).

    Attributes after a step (0-d device arrays, for tests and diagnostics; reading them syncs):
        accepted: whether the last trial point was accepted.
        t: the step multiplier the next step will use.
    """

    name = "lbfgs"
    _arrays = ("S", "Y", "rho", "gamma", "t", "accepted")

    def __init__(self, history: int = DEFAULT_LBFGS_HISTORY, c1: float = 1e-4,
                 curvature_eps: float | None = None, growth: float = DEFAULT_LBFGS_GROWTH) -> None:
        self.history = integer("history", history)
        self.c1 = positive_number("c1", c1)
        if self.c1 >= 1.0:
            raise OptionError(f"c1 must be in (0, 1), got {c1!r}")
        self.growth = positive_number("growth", growth)
        if self.growth < 1.0:
            raise OptionError(f"growth must be >= 1, got {growth!r}")
        self.curvature_eps = None if curvature_eps is None else positive_number("curvature_eps",
                                                                                curvature_eps)
        self.reset()

    def reset(self) -> None:
        self._S = self._Y = self._rho = self._head = None          # the ring (see _init_state)
        self._q = self._w = self._finite = None                     # scratch vectors
        self.gamma = self.t = self.accepted = None

    def _init_state(self, xp, x: Array) -> None:
        """The ring of curvature pairs and the scratch vectors, allocated once: no step allocates
        anything the size of the image but the trial point it hands to ``fun``.

        **The ring.** ``m + 1`` slots of ``(s, y, rho)``; ``_head`` (a 0-d device integer) is the
        slot of the newest pair, so the pair ``k`` places older (the history's row ``k``) is in slot
        ``(head - k) mod (m + 1)`` and the slot ``head + 1`` is the spare. Each step writes its
        trial pair into the spare unconditionally; a push only advances ``head`` (``where``, on the
        device), which makes the spare the newest pair and the oldest pair the new spare. A pair
        that is not pushed stays in the spare, outside the ``m`` slots the recursion reads, and the
        next step overwrites it. So a push moves two vectors into place instead of rewriting the
        whole ``(m, n)`` history, and nothing depends on a value read on the host."""
        m, n = self.history, x.shape[0]
        # zeros written, not only mapped (np.zeros is calloc: its pages would become resident one
        # pair per push, the process growing until the history is full): all the memory from step 1
        self._S = xp.empty((m + 1, n), dtype=x.dtype)
        self._Y = xp.empty((m + 1, n), dtype=x.dtype)
        self._S.fill(0)
        self._Y.fill(0)
        self._rho = xp.zeros((m + 1,), dtype=x.dtype)     # 0 marks an empty slot
        self._head = xp.zeros((), dtype=np.int64)
        self._q, self._w = (xp.empty((n,), dtype=x.dtype) for _ in range(2))
        self._finite = xp.empty((n,), dtype=bool)
        self.gamma = xp.zeros((), dtype=x.dtype)   # s.y / y.y of the newest pair (0: none yet)
        self.t = xp.ones((), dtype=x.dtype)
        self.accepted = xp.zeros((), dtype=bool)

    def _slot(self, k: int) -> Array:
        """The ring slot of the pair ``k`` places older than the newest (``k = -1``: the spare)."""
        return (self._head - k) % (self.history + 1)

    def _rows(self, ring: Array) -> Array | None:
        return None if ring is None else ring[self._slot(get_xp(ring).arange(self.history))]

    @property
    def S(self) -> Array | None:
        """The steps ``s_i`` ``(m, n)``, newest first (a copy gathered from the ring; None before the first step)."""
        return self._rows(self._S)

    @property
    def Y(self) -> Array | None:
        """The gradient changes ``y_i`` ``(m, n)``, newest first (a copy, as :attr:`S`)."""
        return self._rows(self._Y)

    @property
    def rho(self) -> Array | None:
        """``1 / (s_i . y_i)`` ``(m,)``, newest first, 0 for an empty row (a copy, as :attr:`S`)."""
        return self._rows(self._rho)

    def load_state(self, state: dict[str, Any], xp: Any = np) -> None:
        """Continue from a :meth:`state_dict`. Its ``S``, ``Y``, ``rho`` are the history's rows,
        newest first (:attr:`S`: the layout of every checkpoint, before the ring and since,
        whatever slot holds which pair): row ``k`` goes to ring slot ``(0 - k) mod (m + 1)`` with
        ``head = 0``. The ring's order is the rows' order, so the directions, and the run, continue
        bit for bit. A state with another number of rows than ``history`` is refused (ValueError)."""
        present = self._arrays_in(state)
        self.reset()
        if not present:
            return
        S, Y, rho = (np.asarray(state[k]) for k in ("S", "Y", "rho"))
        m = self.history
        if S.ndim != 2 or S.shape[0] != m or Y.shape != S.shape or rho.shape != (m,):
            raise ValueError(f"lbfgs state holds {S.shape[0] if S.ndim == 2 else '?'} pairs of shape "
                             f"{S.shape}, this optimizer keeps history={m}")
        slots = (-np.arange(m)) % (m + 1)
        self._init_state(xp, xp.asarray(S[0]))
        for ring, rows in ((self._S, S), (self._Y, Y), (self._rho, rho)):
            ring[xp.asarray(slots)] = xp.asarray(rows)
        for key in ("gamma", "t", "accepted"):
            setattr(self, key, xp.asarray(state[key]))

    def _direction(self, xp, g: Array) -> tuple[Array, Array]:
        """Quasi-Newton direction d (in the scratch vector ``_q``) and its slope g.d (< 0).

        The recursion of step 1, each ``a y_i`` and ``(a_i - b) s_i`` formed in the scratch vector
        ``_w`` and added in place: the same operations in the same order as
        ``q -= a * y_i``, ``r += (a_i - b) * s_i``, so the same numbers, without a temporary."""
        S, Y, rho = self._S, self._Y, self._rho
        m = self.history
        slots = [self._slot(i) for i in range(m)]      # newest -> oldest, 0-d device integers
        q, w = self._q, self._w
        xp.copyto(q, g)
        alphas = []
        for k in slots:                         # newest -> oldest
            a = rho[k] * (S[k] @ q)
            xp.multiply(Y[k], a, out=w)
            q -= w
            alphas.append(a)
        gamma0 = 1.0 / xp.maximum(xp.sum(xp.abs(g, out=w)), 1.0)
        gamma = xp.where(rho[slots[0]] > 0, self.gamma, gamma0)
        r = xp.multiply(q, gamma, out=q)        # q is spent: r takes its place
        for i in reversed(range(m)):            # oldest -> newest
            k = slots[i]
            b = rho[k] * (Y[k] @ r)
            xp.multiply(S[k], alphas[i] - b, out=w)
            r += w
        d = xp.negative(r, out=r)
        gd = g @ d
        # Descent safeguard: "gd < 0" is False for NaN too, so a broken direction falls back.
        descent = gd < 0
        xp.copyto(d, xp.multiply(g, -gamma, out=w), where=~descent)
        gd = xp.where(descent, gd, -gamma * (g @ g))
        return d, gd

    def step(self, fun, x, f, g):
        _check_flat(x, g)
        xp = get_xp(x, g)
        if self._S is None:
            self._init_state(xp, x)
        elif self._S.shape[1] != x.shape[0] or self._S.dtype != x.dtype or get_xp(self._S) is not xp:
            raise ValueError(f"L-BFGS state was built for x of shape ({self._S.shape[1]},) and dtype "
                             f"{self._S.dtype}, got {x.shape} {x.dtype}; call reset() first")
        # NumPy would warn about inf - inf etc. in a rejected trial's arithmetic; those values are
        # discarded by the where()s, so silence them (errstate does not affect CuPy).
        # one_blas_thread: the dot products stay on this thread, not waking BLAS's threads to spin
        # beside the objective's (numpynst.layers.fast.parallel)
        with np.errstate(all="ignore"), one_blas_thread(x):
            d, gd = self._direction(xp, g)
            x_t = xp.multiply(d, self.t)        # t d + x: the trial, the one new vector of a step
            x_t += x
        f_t, g_t = fun(x_t)
        with np.errstate(all="ignore"), one_blas_thread(x):
            return self._update(xp, x, f, g, gd, x_t, f_t, g_t)

    def _update(self, xp, x, f, g, gd, x_t, f_t, g_t):
        t = self.t
        finite = xp.isfinite(f_t) & xp.all(xp.isfinite(g_t, out=self._finite))
        accepted = finite & (f_t <= f + self.c1 * t * gd)

        # Next step multiplier: minimizer of the quadratic q(s) with q(0) = f, q'(0) = gd,
        # q(t) = f_t, i.e. s* = -gd t^2 / (2 (f_t - f - gd t)); the denominator is > 0 whenever a
        # finite trial failed Armijo. Clipped to [0.1 t, 0.5 t] so the search neither stalls nor
        # collapses.
        t_quad = -gd * t * t / (2.0 * (f_t - f - gd * t))
        t_quad = xp.where(finite & xp.isfinite(t_quad), xp.clip(t_quad, 0.1 * t, 0.5 * t), 0.1 * t)

        # Curvature pair of the trial (in the scratch vectors: the direction is spent); pushed
        # only if accepted and cos(s, y) > eps.
        s = xp.subtract(x_t, x, out=self._q)
        y = xp.subtract(g_t, g, out=self._w)
        sy = s @ y
        yy = y @ y
        eps = self.curvature_eps
        if eps is None:
            eps = math.sqrt(float(np.finfo(x.dtype).eps))
        push = accepted & (sy > eps * xp.sqrt(s @ s) * xp.sqrt(yy))
        safe_sy = xp.where(push, sy, 1.0)
        safe_yy = xp.where(push, yy, 1.0)
        spare = self._slot(-1)                  # written every step, made the newest by a push
        self._S[spare] = s
        self._Y[spare] = y
        self._rho[spare] = 1.0 / safe_sy
        self._head = xp.where(push, spare, self._head)
        self.gamma = xp.where(push, safe_sy / safe_yy, self.gamma).astype(x.dtype)
        self.accepted = accepted

        # While no curvature pair is stored (even after this step), an accepted step grows t
        # (extrapolation): gamma0 = 1/|g|_1 is only a safe first guess, and without a pair nothing
        # else corrects it. Once a pair exists, gamma carries the scale and t restarts at 1.
        t_acc = xp.where(self._rho[self._head] == 0, t * self.growth, xp.ones_like(t))
        self.t = xp.where(accepted, t_acc, t_quad).astype(x.dtype)

        # the new point in the trial's own vectors (x_t is ours; g_t is fun's new array, see step)
        rejected = ~accepted
        xp.copyto(x_t, x, where=rejected)
        xp.copyto(g_t, g, where=rejected)
        f_new = xp.where(accepted, f_t, f)
        return x_t, f_new, g_t


class MinimizeResult(NamedTuple):
    """Outcome of :func:`minimize`.

    ``x``, ``f``, ``g``: the last point, its value (0-d array) and gradient. ``iterations``: steps
    taken; ``evaluations``: calls of fun (steps + 1: the start is evaluated once). ``best_x``,
    ``best_f``: the lowest finite value seen and its point (a NaN never counts as best).
    ``history``: host float64 array ``(iterations + 1, 1 + k)``, one row per point visited (the
    start first): the value, then the ``k`` extra values fun returned with it (none: ``k = 0``).
    ``stopped``: why the loop ended — ``"iterations"`` (the budget ran out), ``"tolerance"`` (the
    value decreased by less than ``tol`` over ``tol_window`` steps), ``"callback"`` (a callback
    asked to stop), ``"non-finite loss"`` (NaN/inf seen at a logging point), ``"interrupted"``
    (Ctrl-C, or SIGTERM turned into KeyboardInterrupt by the caller) or ``"cluster lost"`` (fun
    raised :class:`numpynst.errors.ClusterLost`; ``note`` is its message).
    """
    x: Array
    f: Array
    g: Array
    iterations: int
    evaluations: int
    best_x: Array = None
    best_f: Array = None
    history: np.ndarray | None = None
    stopped: str = "iterations"
    note: str = ""


STOP_REASONS = ("iterations", "tolerance", "callback", "non-finite loss", "interrupted", "cluster lost")


class LoopState(NamedTuple):
    """Where :func:`minimize` stands after ``step`` steps, on the host: enough to continue it bit for
    bit (``minimize(..., resume=state)``) in another process. ``x``, ``f``, ``g``: the current point,
    its value and gradient; ``best_x``, ``best_f``: the best point so far; ``history``: the rows of
    the steps so far, the start included (``(step + 1, 1 + k)`` float64); ``optimizer``: the
    optimizer's :meth:`Optimizer.state_dict`. Arrays keep the run's dtype."""
    step: int
    x: np.ndarray
    f: np.ndarray
    g: np.ndarray
    best_x: np.ndarray
    best_f: np.ndarray
    history: np.ndarray
    optimizer: dict


def minimize(fun: Objective, x0: Array, optimizer: Optimizer, iterations: int,
             callback: Callable[[int, Array, Array, Array], Any] | None = None, *,
             log_every: int = 0, on_log: Callable[[int, np.ndarray, Array], Any] | None = None,
             tol: float | None = None, tol_window: int = 20, resume: LoopState | None = None,
             checkpoint: Callable[[LoopState], Any] | None = None,
             checkpoint_every: float = 0.0) -> MinimizeResult:
    """Evaluate ``fun(x0)`` once, then take up to ``iterations`` optimizer steps.

    ``fun(x)`` returns ``(f, g)``, or ``(f, g, extra)`` with ``extra`` a 1-D array of values to
    record beside ``f`` (style transfer passes the content, style and TV terms). Every value is
    written into a device buffer; nothing crosses to the host between logging points.

    * ``callback(k, x, f, g)`` is called after every step k (1-based); a truthy return stops. It
      sees device arrays: converting ``f`` to a float syncs, which is the caller's choice.
    * Every ``log_every`` steps (and after the last; ``0``: only at the end) the rows recorded
      since the previous logging point are copied to the host in one transfer; then the loop stops
      on a non-finite value, on ``tol`` (relative decrease of f below ``tol`` over the last
      ``tol_window`` steps; ``None``/0: never), or when ``on_log(k, rows, x)`` returns ``False``.
    * Ctrl-C (KeyboardInterrupt) ends the loop with ``stopped="interrupted"``; the best point so
      far is in the result.
    * ``checkpoint(state)`` is called with a :class:`LoopState` at a logging point (every row is
      then on the host, so a resumed run logs exactly what this one would have) when at least
      ``checkpoint_every`` seconds have passed since the start or the previous call (0: at every
      logging point). Copying the state to the host is its only cost (one sync).
    * ``resume``: continue from a :class:`LoopState` instead of evaluating ``x0`` (which is then
      not used): the optimizer's state is loaded, the history restored, and steps
      ``resume.step + 1 ..`` are taken. With the same ``fun``, optimizer settings and arguments,
      the result is the one the uninterrupted call returns, bit for bit, on a deterministic
      backend (NumPy with the same BLAS and thread count).

    The best point is tracked on the device with ``where``. ``x0`` is not modified.
    """
    iterations = integer("iterations", iterations, minimum=0)
    log_every = integer("log_every", log_every, minimum=0)
    xp = get_xp(x0)
    latest: list[Array] = []            # the extra values of the newest evaluation

    def f_and_g(x: Array) -> tuple[Array, Array]:
        out = fun(x)
        latest[:] = [xp.asarray(out[2], dtype=xp.float64).reshape(-1)] if len(out) > 2 else []
        return out[0], out[1]

    stopped, k, first, note = "iterations", 0, 1, ""
    if resume is None:
        x = x0.copy()
        # the caller's x0 need not outlive the copy: a caller that passes its only reference (stylize
        # does) frees an image-sized vector for the whole loop (200 MB at 4096 px)
        del x0
        f, g = f_and_g(x)
        row = xp.concatenate([xp.asarray(f, dtype=xp.float64).reshape(1), *latest])
        hist = xp.empty((iterations + 1, row.shape[0]), dtype=xp.float64)
        hist[0] = row
        best_x, best_f = x.copy(), f.copy()
        rows_host: list[np.ndarray] = []
    else:
        del x0
        k = first = integer("resume.step", resume.step, minimum=0, maximum=iterations)
        first += 1
        x, f, g, best_x, best_f = (xp.asarray(a) for a in resume[1:6])
        best_x = best_x.copy()              # updated in place below: not the caller's array
        done = np.asarray(resume.history, dtype=np.float64)
        hist = xp.empty((iterations + 1, done.shape[1]), dtype=xp.float64)
        hist[:k + 1] = xp.asarray(done)
        rows_host = [done]                  # logged: a state is taken at logging points only
        optimizer.load_state(resume.optimizer, xp)
    saved_at = time.monotonic()

    def state(step: int) -> LoopState:
        return LoopState(step, *(np.array(to_host(a), copy=True) for a in (x, f, g, best_x, best_f)),
                         np.concatenate(rows_host), optimizer.state_dict())

    def flush(upto: int) -> np.ndarray:
        logged = sum(len(r) for r in rows_host)
        rows = np.asarray(to_host(hist[logged:upto + 1]))       # the one device->host copy
        rows_host.append(rows)
        return rows

    def host_stop(step: int) -> str | None:
        rows = flush(step)
        if not np.all(np.isfinite(rows[:, 0])):
            return "non-finite loss"
        if tol and step >= tol_window:
            values = np.concatenate([r[:, 0] for r in rows_host])
            old, new = values[step - tol_window], values[step]
            if old - new <= tol * abs(old):
                return "tolerance"
        if on_log is not None and on_log(step, rows, x) is False:
            return "callback"
        return None

    try:
        for step in range(first, iterations + 1):
            x_new, f, g = optimizer.step(f_and_g, x, f, g)
            if latest:      # the extras of the point kept (a rejected L-BFGS trial keeps the old)
                row = xp.concatenate([xp.asarray(f, dtype=xp.float64).reshape(1), *latest])
                # GD and Adam always move (accepted is the Python True): no where. cupy.where needs
                # an array condition (it calls condition.astype), so where(True, ...) fails there.
                if optimizer.accepted is not True:
                    row = xp.where(optimizer.accepted, row, hist[step - 1])
            else:
                row = xp.asarray(f, dtype=xp.float64).reshape(1)
            hist[step] = row
            x, k = x_new, step
            improved = f < best_f               # False for NaN: a non-finite value is never best
            best_f = xp.where(improved, f, best_f)
            xp.copyto(best_x, x, where=improved)        # in place: best_x is this loop's own copy
            if callback is not None and callback(step, x, f, g):
                stopped = "callback"
                break
            if log_every and (step % log_every == 0 or step == iterations):
                reason = host_stop(step)
                if reason:
                    stopped = reason
                    break
                if checkpoint is not None and step < iterations and \
                        time.monotonic() - saved_at >= checkpoint_every:
                    checkpoint(state(step))
                    saved_at = time.monotonic()         # the writing's own time does not count
    except KeyboardInterrupt:
        stopped = "interrupted"
    except ClusterLost as exc:          # the evaluations cannot go on; the best point stands
        stopped, note = "cluster lost", str(exc)
    logged = sum(len(r) for r in rows_host)
    if logged <= k:
        rows = flush(k)
        if stopped == "iterations" and not np.all(np.isfinite(rows[:, 0])):
            stopped = "non-finite loss"
    history = np.concatenate(rows_host) if rows_host else np.empty((0, hist.shape[1]))
    return MinimizeResult(x, f, g, k, k + 1, best_x, best_f, history, stopped, note)


def make_optimizer(name: str, lr: float | None = None, **kw: Any) -> Optimizer:
    """An optimizer by name, with defaults for style transfer on 0..255-scale pixels.

    * ``"lbfgs"`` — :class:`LBFGS` (history 10). Takes no lr; passing one is an error rather
      than silently ignored. Extra options: history, c1, curvature_eps, growth.
    * ``"adam"`` — :class:`Adam`, lr defaults to 5.0 (pixel units per step). Extra options:
      beta1, beta2, eps.
    * ``"gd"`` — :class:`GradientDescent`; lr is required (a stable step depends on the scale of
      the loss, i.e. on the style/content weights, which only the caller knows).

    Raises:
        OptionError: unknown name, unknown option, or an invalid value (names the option).
    """
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    name = name.lower()
    allowed = {"gd": (), "adam": ("beta1", "beta2", "eps"),
               "lbfgs": ("history", "c1", "curvature_eps", "growth")}[name]
    valid = allowed if name == "lbfgs" else ("lr",) + allowed
    for key in kw:
        if key not in allowed:
            raise OptionError(f"option {key!r} does not apply to optimizer {name!r} "
                              f"(valid: {', '.join(valid)})")
    if name == "lbfgs":
        if lr is not None:
            raise OptionError("option lr does not apply to optimizer 'lbfgs' (it needs no learning "
                              "rate); leave it unset")
        return LBFGS(**kw)
    if name == "adam":
        return Adam(lr=DEFAULT_ADAM_LR if lr is None else lr, **kw)
    if lr is None:
        raise OptionError("optimizer 'gd' needs a learning rate: set lr (a stable value depends on "
                          "the loss weights)")
    return GradientDescent(lr=lr)
