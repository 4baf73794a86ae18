"""
Figures of a policy's action distribution and of QSM's denoising chains (matplotlib and scipy: ``pip install
sb3-qsm[plots]``). Get the arrays with ``sb3_qsm.inspection``:

.. code-block:: python

    from sb3_qsm.inspection import denoising_trajectories, sample_actions
    from sb3_qsm.plotting import plot_action_distribution, plot_denoising

    plot_action_distribution(sample_actions(model, obs, 2000), low=env.action_space.low, high=env.action_space.high)
    plot_denoising(denoising_trajectories(model, obs, 50))
"""

from typing import Any

import numpy as np

try:
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from scipy.stats import gaussian_kde
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError("sb3_qsm.plotting needs matplotlib and scipy: pip install 'sb3-qsm[plots]'") from error


def _kde(points: np.ndarray) -> Any:
    """A Gaussian kernel density estimate of ``points`` (shape ``(dim, n)``), or None if they span no volume."""
    try:
        return gaussian_kde(points)
    except (np.linalg.LinAlgError, ValueError):  # all samples (nearly) equal, as with a deterministic policy
        return None


def _bounds(actions: np.ndarray, low: Any, high: Any) -> tuple[np.ndarray, np.ndarray]:
    dim = actions.shape[1]
    low = np.broadcast_to(actions.min(axis=0) if low is None else np.asarray(low, dtype=float), (dim,))
    high = np.broadcast_to(actions.max(axis=0) if high is None else np.asarray(high, dtype=float), (dim,))
    return low, high


def _plot_1d(ax: Axes, values: np.ndarray, low: float, high: float, bins: int) -> None:
    ax.hist(values, bins=bins, range=(low, high), density=True, alpha=0.5)
    kde = _kde(values[None])
    if kde is not None:
        grid = np.linspace(low, high, 400)
        ax.plot(grid, kde(grid))
    ax.set_xlim(low, high)


def _plot_2d(ax: Axes, points: np.ndarray, low: np.ndarray, high: np.ndarray, density: bool) -> None:
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.3, zorder=2)
    kde = _kde(points.T) if density else None
    if kde is not None:
        xs, ys = np.meshgrid(np.linspace(low[0], high[0], 100), np.linspace(low[1], high[1], 100))
        ax.contour(xs, ys, kde(np.vstack([xs.ravel(), ys.ravel()])).reshape(xs.shape), levels=6)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])


def plot_action_distribution(
    actions: np.ndarray,
    low: Any = None,
    high: Any = None,
    modes: np.ndarray | None = None,
    bins: int = 50,
    density: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """
    Draw sampled actions: for a 1-D action space a histogram and a kernel density estimate; for 2-D a scatter plot
    with density contours; above that, pairwise projections (histograms on the diagonal).

    :param actions: Actions, shape ``(n, action_dim)`` (``sample_actions``)
    :param low: Lower bounds of the action space (default: the samples' minimum)
    :param high: Upper bounds
    :param modes: Known modes to mark, shape ``(n_modes, action_dim)``
    :param bins: Histogram bins
    :param density: Whether to draw the kernel density estimate in 2-D
    :param title: Title of the figure
    :param ax: Axes to draw on (1-D and 2-D actions only); a new figure if None
    :return: The figure
    """
    actions = np.asarray(actions, dtype=float)
    if actions.ndim != 2 or len(actions) == 0:
        raise ValueError(f"actions must have shape (n, action_dim), got {actions.shape}")
    dim = actions.shape[1]
    low, high = _bounds(actions, low, high)
    if dim <= 2:
        fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 4))
        ax = ax if ax is not None else fig.add_subplot()
        if dim == 1:
            _plot_1d(ax, actions[:, 0], low[0], high[0], bins)
            if modes is not None:
                for mode in np.asarray(modes)[:, 0]:
                    ax.axvline(mode, color="black", linestyle=":", linewidth=1)
        else:
            _plot_2d(ax, actions, low, high, density)
            if modes is not None:
                modes = np.asarray(modes)
                ax.scatter(modes[:, 0], modes[:, 1], marker="o", facecolors="none", edgecolors="black", s=90)
        if title:
            ax.set_title(title)
        return fig  # type: ignore[return-value]
    if ax is not None:
        raise ValueError("ax is supported for 1-D and 2-D actions only: pairwise projections need their own figure")
    fig, axes = plt.subplots(dim, dim, figsize=(2.2 * dim, 2.2 * dim), squeeze=False)
    for i in range(dim):
        for j in range(dim):
            if i == j:
                _plot_1d(axes[i, j], actions[:, i], low[i], high[i], bins)
            else:
                _plot_2d(axes[i, j], actions[:, [j, i]], low[[j, i]], high[[j, i]], density=False)
            axes[i, j].set_xlabel(f"a[{j}]" if i == dim - 1 else "")
            axes[i, j].set_ylabel(f"a[{i}]" if j == 0 else "")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_denoising(chains: np.ndarray, max_chains: int = 50, title: str | None = None, ax: Axes | None = None) -> Figure:
    """
    Draw QSM's reverse diffusion chains, from the noise ``x_T`` to the actions: for 2-D actions as paths in the
    action plane (circles: starts, dots: actions); otherwise each action dimension against the diffusion step.

    :param chains: Shape ``(T + 1, n, action_dim)`` (``denoising_trajectories``)
    :param max_chains: Number of chains drawn at most
    :param title: Title of the figure
    :param ax: Axes to draw on (1-D and 2-D actions only); a new figure if None
    :return: The figure
    """
    chains = np.asarray(chains, dtype=float)
    if chains.ndim != 3:
        raise ValueError(f"chains must have shape (T + 1, n, action_dim), got {chains.shape}")
    chains = chains[:, :max_chains]
    n_diffusion_steps, dim = chains.shape[0] - 1, chains.shape[2]
    if dim == 2:
        fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 4))
        ax = ax if ax is not None else fig.add_subplot()
        for k in range(chains.shape[1]):
            ax.plot(chains[:, k, 0], chains[:, k, 1], color="gray", alpha=0.4, linewidth=0.8)
        ax.scatter(chains[0, :, 0], chains[0, :, 1], facecolors="none", edgecolors="C0", s=12, label="x_T (noise)")
        ax.scatter(chains[-1, :, 0], chains[-1, :, 1], color="C3", s=10, label="x_0 (action)")
        ax.legend(loc="upper right", fontsize="small")
        axes_list = [ax]
    else:
        if ax is not None and dim > 1:
            raise ValueError("ax is supported for 1-D and 2-D actions only")
        fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 2.2 * dim))
        axes_list = [ax] if ax is not None else [fig.add_subplot(dim, 1, i + 1) for i in range(dim)]
        steps = np.arange(n_diffusion_steps, -1, -1)  # x_T first, x_0 last
        for i, axis in enumerate(axes_list):
            axis.plot(steps, chains[:, :, i], color="gray", alpha=0.4, linewidth=0.8)
            axis.set_xlim(n_diffusion_steps, 0)
            axis.set_ylabel(f"a[{i}]")
        axes_list[-1].set_xlabel("diffusion step t (T = noise, 0 = action)")
    if title:
        axes_list[0].set_title(title)
    return fig  # type: ignore[return-value]
