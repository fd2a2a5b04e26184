"""``bohmpower plot OUT.h5``: the standard figure of a result file.

One figure (PNG, PDF or SVG, chosen by the suffix of ``-o``): for each volume, in spatial order (left to
right), its energy E_Omega(t) and its power terms (window averages drawn at the window centres when the
file has them, with error bands when it has standard errors); then space-time maps of the energy density
and the power density, and the density with a few stored trajectories on top. Units are written the way
people write them (Ha, eV/fs, fs, nm; the atomic unit of time as a.u.), and the legends sit outside the
panels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bohmpower.errors import ConfigError
from bohmpower.io import read_result

#: Figure formats, chosen by the suffix of the output file.
FORMATS = ("png", "pdf", "svg")

TERMS = ("field_work", "interaction", "quantum", "boundary_flux", "absorbed")
TERM_LABELS = {
    "power": "P (total)",
    "field_work": "P_J field work",
    "interaction": "P_C interaction",
    "quantum": "P_S+P_N quantum",
    "quantum_flux": "P_S",
    "quantum_nonlocal": "P_N",
    "boundary_flux": "P_B boundary flux",
    "absorbed": "A absorbed",
}


#: pint names in result files -> the symbols people write on an axis.
UNIT_SYMBOLS = {
    "hartree": "Ha",
    "atomic_unit_of_time": "a.u.",
    "atomic_unit_of_electric_field": "a.u.",
    "electron_volt": "eV",
    "femtosecond": "fs",
    "nanometer": "nm",
    "dimensionless": "",
}


def _label(units: str) -> str:
    """Axis-label form of a pint unit string: ``hartree/atomic_unit_of_time`` -> ``Ha/a.u.``."""
    parts = re.split(r"([/*() ])", units or "")
    return "".join(UNIT_SYMBOLS.get(p, p) for p in parts).replace("**", "^")


def _axis(quantity: str, units: str) -> str:
    """``quantity (unit)``, or the bare quantity for dimensionless data."""
    u = _label(units)
    return f"{quantity} ({u})" if u else quantity


def spatial_order(vols: dict) -> list[str]:
    """Volume names ordered left to right by centre, the narrower first at equal centres."""
    def key(name):
        a, b = float(vols[name]["attrs"]["x_min"]), float(vols[name]["attrs"]["x_max"])
        return (0.5 * (a + b), b - a, name)

    return sorted(vols, key=key)


def figure_format(output: Path) -> str:
    """The format of ``output`` from its suffix; ConfigError (exit 2) for anything but FORMATS."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError("-o/--output", f"{output.name}: the suffix chooses the figure format; use "
                          f"one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def _band(ax, t, y, se, color, label, style="-"):
    ax.plot(t, y, style, color=color, lw=1.2, label=label)
    if se is not None:
        ax.fill_between(t, y - se, y + se, color=color, alpha=0.25, lw=0)


def _collect(ax, legend: dict, prefix: str = "") -> None:
    """Gather an axes' labelled artists into the figure legend (first occurrence wins)."""
    for handle, label in zip(*ax.get_legend_handles_labels()):
        legend.setdefault(prefix + label, handle)


def _window_units(res) -> str:
    from bohmpower.io import result_reader

    with result_reader(res["path"]) as f:
        return f["fields/window/power_density"].attrs["units"]


def _choose(given, allowed, option: str) -> list[str]:
    """The names of ``given`` (a list or a comma-separated string) in the order of ``allowed``;
    ConfigError naming ``option`` and the choices for a name that is not one of them."""
    if given is None:
        return list(allowed)
    names = [n.strip() for n in (given.split(",") if isinstance(given, str) else given)
             if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise ConfigError(option, f"{', '.join(unknown) or 'nothing'} is not one of "
                          f"{', '.join(allowed)}; give a comma-separated list of those")
    return [n for n in allowed if n in names]


def drive_potential(shapes: np.ndarray, time_profile: np.ndarray) -> np.ndarray:
    """q phi(x) of the drives at their strongest frame, sum_f f(t*) g_f(x), from the result file's
    ``/model/drive_potential`` shapes g_f and ``/model/time_profile`` f (t* the frame where
    sum |f| is largest); zero without drives."""
    shapes = np.atleast_2d(np.asarray(shapes, dtype=float))
    prof = np.atleast_2d(np.asarray(time_profile, dtype=float))
    if shapes.shape[0] == 0 or prof.size == 0:
        return np.zeros(shapes.shape[-1])
    strongest = int(np.argmax(np.sum(np.abs(prof), axis=0)))
    return prof[:, strongest] @ shapes


def _potential_panel(ax, res, vols, legend: dict) -> None:
    """U0 and U0 + q phi (the drives at their strongest) along x, the volumes shaded; the line
    labels go to the figure's ``legend``."""
    x, xu = res["x"], res["units"]["x"]
    eu = res.get("U0_units", "")
    if "U0" in res:
        ax.plot(x, res["U0"], color="0.4", lw=1.0, label="U0")
        if "drive_potential" in res and np.size(res["drive_potential"]):
            ax.plot(x, res["U0"] + drive_potential(res["drive_potential"], res["time_profile"]),
                    color="k", lw=1.2, label="U0 + qφ (field at its strongest)")
    for j, (name, v) in enumerate(vols.items()):
        a, b = v["attrs"]["x_min"], v["attrs"]["x_max"]
        if a <= x[0] and b >= x[-1]:
            continue  # the whole cell: nothing to mark
        ax.axvspan(a, b, color=f"C{j % 10}", alpha=0.15, lw=0)
        ax.text(0.5 * (a + b), 1.0, name, transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=7, color=f"C{j % 10}")
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel(_axis("x", xu), fontsize=8)
    ax.set_ylabel(_axis("potential", eu), fontsize=8)
    ax.set_title("potential along x, the volumes shaded", fontsize=9)
    _collect(ax, legend)


def plot_result(path, output=None, volumes=None, terms=None, t_range=None,
                symlog: bool = False) -> Path:
    """Write the standard figure of ``path`` to ``output`` (default: beside it, ``.png``).

    The suffix of ``output`` chooses the format: ``.png``, ``.pdf`` or ``.svg``. ``volumes`` and
    ``terms`` (lists or comma-separated names) choose the volumes and the power terms drawn
    (default: all; ``power`` is one of the terms); ``t_range`` = (t0, t1) in the file's time unit
    limits the time axes (None for an open end); ``symlog`` draws the power terms on a symmetric
    log axis, so that terms of very different sizes are all readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = read_result(path, fields=True)
    output = Path(output) if output else Path(path).with_suffix(".png")
    fmt = figure_format(output)
    t, x = res["time"], res["x"]
    tu, xu = res["units"]["time"], res["units"]["x"]
    chosen = _choose(volumes, spatial_order(res["volumes"]), "--volumes")
    drawn_terms = _choose(terms, ("power",) + TERMS, "--terms")
    t_lo, t_hi = t_range if t_range is not None else (None, None)
    if t_lo is not None and t_hi is not None and not t_lo < t_hi:
        raise ConfigError("--t-range", f"the start ({t_lo:g}) must be below the end ({t_hi:g})")
    vols = {name: res["volumes"][name] for name in chosen}
    traj_est = res.get("trajectory_estimates", {})
    n_v = len(vols)
    fig = plt.figure(figsize=(12, 3.0 * (n_v + 1.9) + 0.6), layout="constrained")
    gs = fig.add_gridspec(n_v + 2, 3, height_ratios=[0.7] + [1] * n_v + [1.3])
    legend = {}  # label -> handle, one figure legend outside the panels
    _potential_panel(fig.add_subplot(gs[0, :]), res, vols, legend)
    for i, (name, v) in enumerate(vols.items(), start=1):
        d, w, units = v["data"], v["window"], v["units"]
        ax = fig.add_subplot(gs[i, 0])
        _band(ax, t, d["energy"], d.get("energy_stderr"), "k", "grid" if traj_est else None)
        if name in traj_est:
            te = traj_est[name]["data"]
            _band(ax, t, te["energy"], te.get("energy_stderr"), "C1", "trajectories")
            _collect(ax, legend, prefix="E_Ω: ")
        a, b, s = v["attrs"]["x_min"], v["attrs"]["x_max"], v["attrs"]["smoothing"]
        ax.set_title(f"{name}: [{a:.4g}, {b:.4g}] {xu}" + (f", s = {s:.3g}" if s else ""),
                     fontsize=9)
        ax.set_ylabel(_axis("E_Ω", units.get("energy", "")), fontsize=8)
        ax.set_xlabel(_axis("t", tu), fontsize=8)
        ax2 = fig.add_subplot(gs[i, 1:])
        if w:
            tw = w["t_start"] + 0.5 * float(res["attrs"].get("window", 0))
            src, label = w, "window averages at the window centres"
            tt = tw
        else:
            src, label, tt = d, "instantaneous", t
        tw_traj = traj_est.get(name, {}).get("window", {})
        for j, q in enumerate(("power",) + TERMS):
            color = f"C{j}" if q != "power" else "k"
            if q not in drawn_terms:
                continue
            if q in src:
                _band(ax2, tt, src[q], src.get(f"{q}_stderr"), color,
                      TERM_LABELS[q], "-" if q != "power" else "--")
            if q in tw_traj:
                ax2.errorbar(tw_traj["t_start"] + 0.5 * float(res["attrs"].get("window", 0)),
                             tw_traj[q], yerr=tw_traj.get(f"{q}_stderr"), fmt="o", ms=3,
                             color=color, elinewidth=0.8, capsize=1.5)
        if tw_traj:
            label += "; lines: grid, dots: trajectories ± 1 s.e."
        ax2.axhline(0, color="0.6", lw=0.5)
        if symlog:
            # linear within the smallest drawn term's typical size, logarithmic beyond
            sizes = [np.nanmax(np.abs(src[q])) for q in drawn_terms if q in src]
            sizes = [v for v in sizes if v > 0]
            if sizes:
                ax2.set_yscale("symlog", linthresh=0.1 * min(sizes))
            label += "; symmetric log axis"
        for a_ in (ax, ax2):
            a_.set_xlim(t_lo, t_hi)
        ax2.set_title(f"{name}: power and its terms ({label})", fontsize=9)
        power_units = units.get("power") or units.get("field_work", "")
        ax2.set_ylabel(_axis("power", power_units), fontsize=8)
        ax2.set_xlabel(_axis("t", tu), fontsize=8)
        _collect(ax2, legend)
    fields = res["fields"]
    fu = res["field_units"]
    extent = [x[0], x[-1], t[0], t[-1]]
    fw = res.get("fields_window", {})
    if "power_density" not in fields and "power_density" in fw:
        # ensemble runs estimate p(x) as window averages: draw those over the windows' span
        fields = dict(fields, power_density=fw["power_density"])
        fu = dict(fu, power_density=_window_units(res))
        win = float(res["attrs"].get("window", 0))
        p_extent = [x[0], x[-1], fw["t_start"][0], fw["t_start"][-1] + win]
    else:
        p_extent = extent
    for j, (key, title, cmap) in enumerate((("energy_density", "energy density ε(x,t)", "viridis"),
                                            ("power_density", "power density p(x,t)", "RdBu_r"))):
        ax = fig.add_subplot(gs[n_v + 1, j])
        data = fields[key]
        lim = np.nanmax(np.abs(data)) or 1.0
        kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
        im = ax.imshow(data, origin="lower", aspect="auto",
                       extent=p_extent if key == "power_density" else extent, cmap=cmap, **kw)
        cb = fig.colorbar(im, ax=ax)
        cb.set_label(_label(fu.get(key, "")), fontsize=7)
        ax.set_title(title + (" (window averages)" if key == "power_density"
                              and p_extent is not extent else ""), fontsize=9)
        ax.set_xlabel(_axis("x", xu), fontsize=8)
        ax.set_ylabel(_axis("t", tu), fontsize=8)
        for v in vols.values():
            for edge in (v["attrs"]["x_min"], v["attrs"]["x_max"]):
                ax.axvline(edge, color="w" if cmap == "viridis" else "k", lw=0.5, ls=":")
    ax = fig.add_subplot(gs[n_v + 1, 2])
    im = ax.imshow(fields["density"], origin="lower", aspect="auto", extent=extent, cmap="Greys")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(_label(fu.get("density", "")), fontsize=7)
    traj = res.get("trajectories", {})
    if "positions" in traj:
        pos = traj["positions"]  # (n_stored, n_t, N)
        for s in range(min(pos.shape[0], 12)):
            for k in range(pos.shape[2]):
                ax.plot(pos[s, :, k], t, lw=0.7, color=f"C{k}")
        ax.set_title("density and stored trajectories", fontsize=9)
    else:
        ax.set_title("density n(x,t)", fontsize=9)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel(_axis("x", xu), fontsize=8)
    ax.set_ylabel(_axis("t", tu), fontsize=8)
    title = Path(path).name + f" — method {res['attrs'].get('method')}"
    if legend:
        # above the panels, with the file's name as its title: constrained layout keeps both clear
        fig.legend(list(legend.values()), list(legend), loc="outside upper center", title=title,
                   ncol=min(len(legend), 7), fontsize=8, title_fontsize=10, frameon=False)
    else:
        fig.suptitle(title, fontsize=10)
    fig.savefig(output, dpi=110, format=fmt)
    plt.close(fig)
    return output


#: Steady-state power terms a sweep figure draws per volume against the bias.
SWEEP_TERMS = ("field_work", "quantum", "boundary_flux", "power")


def plot_open_result(path, output=None) -> Path:
    """The figure of one open-system run (``bohmpower plot OUT.h5`` of a ``[reservoirs]`` run).

    Left: N(t), the mean number of electrons in a world, with the warm-up marked. With a bias
    switched on (``/transient``), middle: the particle current through every surface in each frame
    interval and the Ramo-Shockley current of the electrodes, the bias on a second axis; right: the
    power of the whole device in each interval, P_Omega and its terms, with V I_RS beside the field
    work. Without: the steady-state power terms of every volume (bars, one standard error).
    """
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bohmpower.devices.engine import DEVICE_VOLUME
    from bohmpower.io import open_result

    output = Path(output) if output else Path(path).with_suffix(".png")
    fmt = figure_format(output)
    with open_result(path) as f:
        try:
            t = f["time"][()]
            tu = f["time"].attrs["units"]
            sg = f["steady_state"]
            n_t = sg["electrons"][()]
            warm = float(sg.attrs["warm_up"])
            tr = f.get("transient")
            fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
            ax = axes[0]
            ax.plot(t, n_t, "k-")
            ax.axvline(warm, color="0.5", ls="--", lw=0.8, label="warm-up")
            ax.set_xlabel(_axis("t", tu))
            ax.set_ylabel("electrons per world N(t)")
            ax.legend(fontsize=7)
            ax.set_title("filling of the device", fontsize=10)
            if tr is not None:
                mid = 0.5 * (tr["interval"][()] + tr["interval_end"][()])
                cu = tr["current"].attrs["units"]
                ax = axes[1]
                for j, xs in enumerate(tr["surface"][()]):
                    ax.plot(mid, tr["current"][j], ".-", lw=0.8, ms=3, color=f"C{j}",
                            label=f"through x = {xs:.4g} {_label(tr['surface'].attrs['units'])}")
                _band(ax, mid, tr["ramo_current"][()], tr["ramo_current_stderr"][()], "k",
                      "Ramo-Shockley (electrodes)")
                ax.set_xlabel(_axis("t", tu))
                ax.set_ylabel(_axis("current", cu))
                ax.legend(fontsize=7)
                ax.set_title("transient current", fontsize=10)
                twin = ax.twinx()
                twin.plot(mid, tr["bias"][()], color="0.6", lw=1)
                twin.set_ylabel(_axis("bias", tr["bias"].attrs["units"]), color="0.5")
                ax = axes[2]
                w = tr["volumes"][DEVICE_VOLUME]["window"]
                starts = w["t_start"][()]
                width = float(np.diff(tr["interval"][()])[0]) if mid.size > 1 else 1.0
                centre = starts + 0.5 * width
                for i, q in enumerate(("power",) + TERMS):
                    if q in w:
                        ax.plot(centre, w[q][()], "-", lw=1, color=f"C{i}",
                                label=TERM_LABELS.get(q, q) if q != "power" else "P_Ω")
                n = starts.size
                ax.plot(centre, tr["bias"][:n] * tr["ramo_current"][:n], "k--", lw=1,
                        label="V I_RS")
                ax.axhline(0.0, color="0.6", lw=0.6)
                ax.set_xlabel(_axis("t", tu))
                ax.set_ylabel(_axis("power", w["power"].attrs["units"]))
                ax.legend(fontsize=7)
                ax.set_title(f"{DEVICE_VOLUME}: power in each interval", fontsize=10)
            else:
                axes[1].set_axis_off()
                ax = axes[2]
                vols = sg["volumes"]
                names = list(vols)
                for i, q in enumerate(("power",) + TERMS):
                    if q not in vols[names[0]]:
                        continue
                    y = [float(vols[n][q][()]) for n in names]
                    e = [float(vols[n][q + "_stderr"][()]) for n in names]
                    ax.bar(np.arange(len(names)) + 0.12 * i, y, 0.12, yerr=e, color=f"C{i}",
                           label=TERM_LABELS.get(q, q) if q != "power" else "P_Ω")
                ax.set_xticks(np.arange(len(names)) + 0.3, names, fontsize=8)
                ax.axhline(0.0, color="0.6", lw=0.6)
                ax.set_ylabel(_axis("power", vols[names[0]]["power"].attrs["units"]))
                ax.legend(fontsize=7)
                ax.set_title("steady-state power per volume", fontsize=10)
        except (KeyError, h5py.Error) as exc:
            from bohmpower.errors import ResultFileError

            raise ResultFileError(f"{path}: incomplete open-system result file ({exc})") from None
    fig.suptitle(Path(path).name + " — open system", fontsize=11)
    fig.savefig(output, format=fmt, dpi=110)
    plt.close(fig)
    return output


def plot_sweep(directory, output=None, n_curve: int = 41) -> Path:
    """The figure of a bias sweep (``bohmpower sweep``; ``bohmpower plot DIR``).

    Left: I(V), the exit current of every point with its standard error over the worlds, the surface
    currents, and the Landauer current of the same device on ``n_curve`` biases (a line through the
    points' own Landauer values). Middle: the steady-state power terms of the whole device against
    the bias, with I V from the exit current beside the field work (energy conservation). Right: the
    power map, the field work per unit length of each volume (colour) against x and the bias. Written
    to ``output`` (default ``DIR/<stem>.iv.png``; the suffix sets the format).
    """
    import matplotlib

    matplotlib.use("Agg")
    import tomllib

    import matplotlib.pyplot as plt

    from bohmpower.config import parse_config
    from bohmpower.devices.engine import DEVICE_VOLUME
    from bohmpower.devices.sweep import landauer_curve, read_sweep

    sw = read_sweep(directory)
    output = Path(output) if output else Path(directory) / f"{sw['stem']}.iv.png"
    fmt = figure_format(output)
    bias, u = sw["bias"], sw["units"]
    config = parse_config(tomllib.loads(sw["config"]), sw["base_dir"])
    lo, hi = float(bias.min()), float(bias.max())
    fine = np.linspace(lo, hi, n_curve) if hi > lo else bias
    curve = landauer_curve(config, fine)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    ax = axes[0]
    ax.plot(fine, curve, "k-", lw=1.2, label="Landauer")
    ax.plot(bias, sw["model_current"], "k:", lw=1, label="injection model (packet-averaged)")
    ax.errorbar(bias, sw["exit_current"], yerr=sw["exit_current_stderr"], fmt="o", color="C3",
                capsize=3, label="exits (± 1 s.e.)")
    shift = 0.01 * (hi - lo if hi > lo else max(abs(hi), 1e-30))  # side by side, not on top
    for j, xs in enumerate(sw["surface"]):
        ax.errorbar(bias + (j + 1) * shift, sw["current"][:, j], yerr=sw["current_stderr"][:, j],
                    fmt=".", color=f"C{j}", alpha=0.7, capsize=2,
                    label=f"crossings at x = {xs:.4g} {_label(u['length'])}")
    ax.set_xlabel(_axis("bias", u["bias"]))
    ax.set_ylabel(_axis("current", u["current"]))
    ax.set_title("I(V)", fontsize=10)
    ax.legend(fontsize=7)
    vols = sw["volumes"]
    ax = axes[1]
    if DEVICE_VOLUME in vols:
        d = vols[DEVICE_VOLUME]
        for i, q in enumerate(SWEEP_TERMS + ("interaction", "absorbed")):
            if q in ("interaction", "absorbed") and not np.any(d[q]):
                continue  # zero without interaction
            ax.errorbar(bias, d[q], yerr=d[q + "_stderr"], fmt="o-", ms=4, color=f"C{i}",
                        capsize=3, label=TERM_LABELS[q] if q != "power" else "P_Ω (-> 0)")
        ax.plot(bias, sw["exit_current"] * bias, "k--", lw=1, label="I V (exits)")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(f"{DEVICE_VOLUME}: steady-state power", fontsize=10)
        ax.set_ylabel(_axis("power", u.get("power", "")))
        ax.legend(fontsize=7)
    ax.set_xlabel(_axis("bias", u["bias"]))
    ax = axes[2]
    parts = sorted((v["x_min"], v["x_max"], n) for n, v in vols.items() if n != DEVICE_VOLUME)
    if parts:
        edges_b = _cell_edges(bias)
        top = max(abs(vols[n]["field_work"]).max() / (b - a) for a, b, n in parts) or 1.0
        for a, b, n in parts:
            dens = vols[n]["field_work"] / (b - a)
            mesh = ax.pcolormesh([a, b], edges_b, dens[:, None], cmap="RdBu_r", vmin=-top,
                                 vmax=top, shading="flat")
            ax.text(0.5 * (a + b), edges_b[0], n, ha="center", va="bottom", fontsize=7,
                    rotation=90 if (b - a) < 0.1 * (parts[-1][1] - parts[0][0]) else 0)
        fig.colorbar(mesh, ax=ax, label=_axis("P_J per length",
                                              f"{u.get('power', '')}/{u['length']}"))
        ax.set_xlabel(_axis("x", u["length"]))
        ax.set_ylabel(_axis("bias", u["bias"]))
        ax.set_title("power map: field work per length of each volume", fontsize=10)
    else:
        ax.text(0.5, 0.5, "no volumes in the run file:\nno power map", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
    fig.suptitle(f"bias sweep {sw['stem']} ({len(bias)} points)", fontsize=11)
    fig.savefig(output, format=fmt, dpi=110)
    plt.close(fig)
    return output


def _cell_edges(values: np.ndarray) -> np.ndarray:
    """Edges of cells centred on sorted ``values`` (a single value: +-5 %, or +-1 around 0)."""
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        h = 0.05 * abs(v[0]) or 1.0
        return np.array([v[0] - h, v[0] + h])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate(([2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]))
