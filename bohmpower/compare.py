"""``bohmpower compare EXACT.h5 OTHER.h5``: differences per volume and term, in standard errors.

The reference is the exact grid solution (``/volumes`` of an exact result). The other side is a
conditional-wavefunction result (``/volumes`` of a ``cw`` file, with ``_stderr`` datasets) or the exact
Bohmian trajectory estimates stored in an exact file (``/trajectory_estimates/volumes``). Volumes match
by name and must have equal edges and smoothing; instantaneous quantities are compared at common
frames, power and its terms only as window averages, with both files' standard errors.

Contributing worlds. Result files store, beside each estimate of a volume, how many worlds
contributed to it at each frame or window (``<q>_worlds``, the participation ratio
n = (sum_i y_i^2)^2 / sum_i y_i^4 of the per-world values,
``power.estimators.contributing_worlds``). From them:

- the other side's standard error is floored at the estimate's granularity, one contributing
  world's value over M: sqrt(sum_i y_i^2 / n) / M (sum_i y_i^2 from the mean and the standard
  error), or the same over every point of the row (the sum of sum_i y_i^2 over the sum of n) where
  that is larger (at a point where the worlds carry only a far tail of the term): where a handful
  of worlds carry the estimate the sample standard error is not a reliable error bar;
- a point with fewer than ``MIN_WORLDS_RESOLVED`` contributing worlds is reported apart, "not
  resolved by M worlds", and left out of the verdict: a difference there says nothing about the
  method. Two exceptions keep the verdict honest. A point where both files give 0 up to round-off
  (``ROUND_OFF`` of the largest exact value of the volume's window terms; for frames, of the row)
  has nothing to resolve (neither judged nor listed). And a point where the worlds are
  missing is judged: fewer than ``MIN_WORLDS_RESOLVED`` worlds in the volume (the count of
  ``particles`` at a frame; at a window, its largest over the frames the window spans) where the
  exact occupancy says at least ``MISSING_WORLDS`` should be there, M N_Omega / N (N electrons; for a window the largest
  N_Omega over its frames); its standard error is floored at the exact value's share of one
  expected world, |exact| / (M N_Omega / N).

For one electron the non-local quantum term P_N vanishes, so the exact file's P_N (the balance of
its window terms) is the discretisation error of its quantum term P_S + P_N: with counts it is the exact
side's standard error of ``quantum`` (the old floor above made room for it).

Files without counts (written before they existed) get the earlier rules: the floor (series scale)
/ M (for the window terms made of events, power, boundary flux, quantum and absorbed, the scale is
at least one electron's energy in the volume divided by the window), and a point is not resolved
when the electrons of the M worlds in the volume, M N_Omega (the larger of the two files' N_Omega;
for a window the largest over the frames it spans), number fewer than ``MIN_ELECTRONS_RESOLVED``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bohmpower.errors import ResultFileError
from bohmpower.io import read_result
from bohmpower.power.statistics import (
    DEFAULT_ALPHA,
    Agreement,
    agreement,
    block_correlation,
    z_scores,
)

#: Quantities compared frame by frame.
INSTANTANEOUS = ("particles", "energy")
#: Quantities compared as window averages.
WINDOWED = ("power", "field_work", "interaction", "quantum", "boundary_flux", "absorbed",
            "quantum_flux", "quantum_nonlocal")
#: Fewest contributing worlds for a point to count in the verdict: with n of them the sample
#: standard error is itself uncertain by about 1/sqrt(2 n), 20 % at 10.
MIN_WORLDS_RESOLVED = 10
#: A point with fewer than MIN_WORLDS_RESOLVED worlds present where the exact occupancy expects at
#: least this many is judged all the same (for Poisson counts of mean 30, fewer than 10 has
#: probability 7e-6): the worlds are missing, which is the method's doing.
MISSING_WORLDS = 30
#: Files without counts: fewest electrons of the M worlds (M N_Omega) in a volume for a point to
#: count in the verdict.
MIN_ELECTRONS_RESOLVED = 10
#: Error bar of an exact grid run's window averages, relative to the volume's largest windowed
#: term (with the stored quadrature error estimate): its grid sums hold the identities to 1e-8 to
#: 1e-7 of that scale (the whole cell's P_C, which vanishes identically), so 1e-6 bounds them, far
#: below any Monte Carlo error bar.
EXACT_WINDOW_ACCURACY = 1e-6
#: Values at most this fraction of the largest exact value of the volume's quantities of a kind
#: (frames: of the row) are round-off: where both files are below it there is nothing to resolve.
ROUND_OFF = 1e-10


#: The legend printed under the table.
COLUMNS_EXPLAINED = (
    "columns: points  frames (kind frame) or power windows (kind window) compared",
    "         max |diff|  largest |exact - other| over those points",
    "         of scale  max |diff| / max |exact| of the row: the worst difference relative to the",
    "                   quantity's own size (about 1 where the other side is 0 and the exact value",
    "                   round-off, e.g. absorbed far from the layers)",
    "         RMS z, max |z|  the differences in standard errors, z = (exact - other) / s.e.,",
    "                   over the resolved points, tested against the bounds on the overall line;",
    "                   '-': no standard errors (or no resolved point)",
    "         unres.    points not resolved by the M worlds: fewer than 10 worlds contributed",
    "                   (listed below; not in the verdict)",
)


@dataclass
class Row:
    volume: str
    quantity: str
    kind: str  # "frame" or "window"
    units: str
    n_points: int
    max_abs_diff: float
    scale: float
    agreement: Agreement | None
    #: points left out of the verdict: fewer than MIN_WORLDS_RESOLVED contributing worlds there
    #: (files without counts: fewer than MIN_ELECTRONS_RESOLVED electrons of the worlds in the
    #: volume); their times, the contributing worlds and M N_Omega there, and |z| there
    unresolved_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unresolved_worlds: np.ndarray | None = None
    unresolved_electrons: np.ndarray = field(default_factory=lambda: np.zeros(0))
    unresolved_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: points judged although fewer than MIN_WORLDS_RESOLVED worlds contributed, because the
    #: exact occupancy expects at least MISSING_WORLDS worlds there
    missing_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (t, z, resolved) of every point of the row, for plots
    z_series: tuple | None = None


@dataclass
class Comparison:
    reference: str
    other: str
    other_source: str
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    overall: Agreement | None = None
    series: dict = field(default_factory=dict)  # (volume, quantity, kind) -> arrays for plots
    #: (volume, quantity, kind) -> (t, z, resolved): the z-scores the verdict is made of, for plots
    z_series: dict = field(default_factory=dict)
    #: worlds of the other file (M)
    n_worlds: int | None = None
    #: the power window T (the files' time unit): figures draw a window at its centre, t + T/2
    window: float = 0.0
    _finite_masks: list = field(default_factory=list, repr=False)

    def table(self) -> str:
        head = (f"{'volume':<14} {'quantity':<16} {'kind':<6} {'points':>6} {'max |diff|':>12} "
                f"{'of scale':>9} {'RMS z':>7} {'max |z|':>8} {'unres.':>6}  units")
        lines = [f"reference (exact grid): {self.reference}",
                 f"other ({self.other_source}): {self.other}", "", head, "-" * len(head)]
        for r in self.rows:
            a = r.agreement
            rel = r.max_abs_diff / r.scale if r.scale > 0 else 0.0
            zs = (f"{a.rms_z:7.2f} {a.max_abs_z:8.2f}" if a and a.n_points else
                  f"{'-':>7} {'-':>8}")
            lines.append(f"{r.volume:<14} {r.quantity:<16} {r.kind:<6} {r.n_points:6d} "
                         f"{r.max_abs_diff:12.4e} {rel:9.2e} {zs} {r.unresolved_t.size:6d}  "
                         f"{r.units}")
        lines.append("")
        lines.extend(COLUMNS_EXPLAINED)
        lines.append("")
        lines.extend(self.unresolved_report())
        if self.overall is not None and self.overall.n_points:
            lines.append(f"overall: {self.overall}")
        else:
            lines.append("overall: no standard errors on either side; absolute differences only")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def unresolved_report(self) -> list[str]:
        """Lines on the points left out of the verdict, one per volume that has any."""
        rows = [r for r in self.rows if r.unresolved_t.size]
        if not rows:
            return []
        counted = any(r.unresolved_worlds is not None for r in rows)
        if counted:
            out = [f"not resolved by {self.n_worlds or 0} worlds (fewer than "
                   f"{MIN_WORLDS_RESOLVED} of them contributed, /..._worlds of the file): left out "
                   "of the verdict; more worlds resolve them"]
        else:
            out = [f"not resolved by {self.n_worlds or 0} worlds (fewer than "
                   f"{MIN_ELECTRONS_RESOLVED} of their electrons in the volume, M N_Omega < "
                   f"{MIN_ELECTRONS_RESOLVED}; this file stores no counts of contributing "
                   "worlds): left out of the verdict; more worlds resolve them"]
        for volume in dict.fromkeys(r.volume for r in rows):
            mine = [r for r in rows if r.volume == volume]
            parts = []
            for kind, what, when in (("frame", "frames", "t"), ("window", "windows",
                                                                  "starting t")):
                times = [r.unresolved_t for r in mine if r.kind == kind]
                if times:  # the points any quantity of that kind leaves out
                    t = np.unique(np.concatenate(times))
                    parts.append(f"{t.size} {what} ({when} = {t.min():.4g} to {t.max():.4g})")
            worst, z = None, 0.0
            for r in mine:
                finite = r.unresolved_z[np.isfinite(r.unresolved_z)]
                if finite.size and np.max(np.abs(finite)) > z:
                    worst, z = r.quantity, float(np.max(np.abs(finite)))
            if counted:
                worlds = np.concatenate([r.unresolved_worlds for r in mine
                                         if r.unresolved_worlds is not None])
                line = (f"  {volume}: " + " and ".join(parts) + f", contributing worlds "
                        f"{worlds.min():.2g} to {worlds.max():.2g}")
            else:
                electrons = np.concatenate([r.unresolved_electrons for r in mine])
                line = (f"  {volume}: " + " and ".join(parts) + f", M N_Omega = "
                        f"{electrons.min():.2g} to {electrons.max():.2g}")
            if worst is not None:
                line += f"; |z| there up to {z:.1f} ({worst})"
            out.append(line)
        out.append("")
        return out


def _other_volumes(other: dict) -> tuple[dict, str]:
    method = other["attrs"].get("method")
    if method == "cw":
        return other["volumes"], "conditional wavefunctions, /volumes"
    if "trajectory_estimates" in other:
        return other["trajectory_estimates"], "exact Bohmian trajectories, /trajectory_estimates"
    return other["volumes"], f"{method} grid values, /volumes"


def _match_times(t_a, t_b, tol):
    ia, ib = [], []
    j = 0
    for i, t in enumerate(t_a):
        while j < len(t_b) and t_b[j] < t - tol:
            j += 1
        if j < len(t_b) and abs(t_b[j] - t) <= tol:
            ia.append(i)
            ib.append(j)
    return np.array(ia, dtype=int), np.array(ib, dtype=int)


def compare_files(exact_path, other_path, alpha: float = DEFAULT_ALPHA) -> Comparison:
    """Compare two result files; raise ResultFileError (exit 2) on any mismatch of setup."""
    ref = read_result(exact_path)
    other = read_result(other_path)
    if ref["attrs"].get("method") != "exact":
        raise ResultFileError(f"{exact_path}: the first file must be an exact result (method "
                              f"{ref['attrs'].get('method')!r})")
    if ref["attrs"].get("units_system") != other["attrs"].get("units_system"):
        raise ResultFileError(
            f"unit systems differ ({ref['attrs'].get('units_system')} vs "
            f"{other['attrs'].get('units_system')}): rerun one with the other's [units] system")
    for key in ("include_drive_potential",):
        if bool(ref["attrs"].get(key)) != bool(other["attrs"].get(key)):
            raise ResultFileError(f"{key} differs between the files: their energies are not the "
                                  "same quantity")
    vols_b, source = _other_volumes(other)
    cmp = Comparison(str(exact_path), str(other_path), source)
    common = [n for n in ref["volumes"] if n in vols_b]
    if not common:
        raise ResultFileError(f"no volume names in common ({', '.join(ref['volumes'])} vs "
                              f"{', '.join(vols_b)})")
    for name in sorted(set(ref["volumes"]) ^ set(vols_b)):
        cmp.notes.append(f"volume {name!r} is in only one file; not compared")
    t_a, t_b = ref["time"], other["time"]
    dt_scale = (t_a[-1] - t_a[0]) / max(len(t_a) - 1, 1) if len(t_a) > 1 else 1.0
    tol = 1e-9 * max(dt_scale, 1e-300)
    ia, ib = _match_times(t_a, t_b, tol)
    if len(ia) == 0:
        raise ResultFileError("the files share no stored time")
    all_z = []
    blocks = other.get("blocks") if source.startswith("exact Bohmian") or \
        other["attrs"].get("method") == "cw" else None
    block_cols = []  # per compared point: its block values (B,), or None
    n_other = int(other["attrs"].get("samples", 0)) or None
    cmp.n_worlds = n_other
    cmp.window = float(ref["attrs"].get("window", 0) or 0)
    for name in common:
        va, vb = ref["volumes"][name], vols_b[name]
        for key in ("x_min", "x_max", "smoothing"):
            a, b = float(va["attrs"][key]), float(vb["attrs"][key])
            if abs(a - b) > 1e-12 * max(1.0, abs(a)):
                raise ResultFileError(f"volume {name!r}: {key} differs ({a} vs {b}); volumes must "
                                      "have equal edges and smoothing")
        electrons = _electrons_in_volume(va, vb, ia, ib, n_other)
        counted = any(k.endswith("_worlds") for k in vb["data"])
        n_el = max(int(ref["attrs"].get("n_particles", 1)), 1)
        exact_n = np.nan_to_num(np.abs(va["data"]["particles"][ia])) if "particles" in \
            va["data"] else None
        present = _counts(vb["data"], "particles", ib)
        expected = None if exact_n is None or not n_other else n_other * exact_n / n_el
        for q in INSTANTANEOUS:
            if q not in va["data"] or q not in vb["data"]:
                continue
            a = va["data"][q][ia]
            b = vb["data"][q][ib]
            se_b = vb["data"].get(f"{q}_stderr")
            se_b = se_b[ib] if se_b is not None else None
            se_a = va["data"].get(f"{q}_stderr")
            se_a = se_a[ia] if se_a is not None else None
            row = _row(name, q, "frame", va["units"].get(q, ""), a, b, se_a, se_b,
                       alpha, all_z, cmp._finite_masks, n_other, t=t_a[ia],
                       electrons=electrons, worlds=_counts(vb["data"], q, ib),
                       present=present, expected=expected)
            cmp.rows.append(row)
            block_cols.append(_block_columns(blocks, f"volumes/{name}/{q}", ib, a.size))
            cmp.series[(name, q, "frame")] = (t_a[ia], a, b, se_b)
            cmp.z_series[(name, q, "frame")] = row.z_series
        wa, wb = va["window"], vb["window"]
        if wa and wb:
            ja, jb = _match_times(wa["t_start"], wb["t_start"], tol)
            own = {q: float(np.nanmax(np.abs(wa[q][ja]))) if len(ja) else 0.0
                   for q in WINDOWED if q in wa}
            largest = max(own.values(), default=0.0)
            # Granularity of a window estimate from M worlds: terms made of events (power,
            # boundary flux and the quantum term built from them: a world entering or leaving;
            # absorbed: a world removed, its energy booked at once) move by one electron's energy
            # per window, (e/T)/M, for a single world; smooth integrands (field work, interaction)
            # by their own size over M. A term that is zero up to round-off is measured against
            # the volume's largest term instead.
            window = float(ref["attrs"].get("window", 0)) or 1.0
            energy_scale = float(np.nanmax(np.abs(va["data"]["energy"]))) / max(
                int(ref["attrs"].get("n_particles", 1)), 1)
            t_frames = t_a[ia]
            win_electrons = None if electrons is None else np.array([
                _window_max(t_frames, electrons, ts, window, tol) for ts in wa["t_start"][ja]])
            win_expected = None if expected is None else np.array([
                _window_max(t_frames, expected, ts, window, tol) for ts in wa["t_start"][ja]])
            win_present = None if present is None else np.array([
                _window_max(t_frames, present, ts, window, tol) for ts in wa["t_start"][ja]])
            for q in WINDOWED:
                if q not in wa or q not in wb:
                    continue
                if q in ("power", "boundary_flux", "quantum", "absorbed", "quantum_nonlocal"):
                    scale_q = max(own[q], energy_scale / window)
                else:
                    scale_q = own[q] if own[q] > 1e-6 * largest else largest
                a, b = wa[q][ja], wb[q][jb]
                se_b = wb.get(f"{q}_stderr")
                se_b = se_b[jb] if se_b is not None else None
                se_a = wa.get(f"{q}_stderr")
                se_a = se_a[ja] if se_a is not None else None
                if (q == "quantum" and se_a is None and n_el == 1 and counted
                        and "quantum_nonlocal" in wa):
                    # one electron: P_N vanishes, so the grid's stored P_N (the balance) is the
                    # discretisation error of its quantum term, the exact side's error bar
                    se_a = np.abs(wa["quantum_nonlocal"][ja])
                if se_a is None and "quadrature_error" in wa:
                    # an exact grid run: its window averages carry the time quadrature's error
                    # estimate and a discretisation error of the grid sums, together the exact
                    # side's error bar. It matters only where a term vanishes identically (the
                    # whole cell's P_C: a residual of ~1e-8 of the scale on the grid, round-off
                    # ~1e-20 on the worlds), never beside a Monte Carlo error bar.
                    se_a = np.hypot(wa["quadrature_error"][ja], EXACT_WINDOW_ACCURACY * largest)
                row = _row(name, q, "window", va["units"].get(q, ""), a, b, se_a, se_b,
                           alpha, all_z, cmp._finite_masks, n_other, scale_q,
                           t=wa["t_start"][ja], electrons=win_electrons,
                           worlds=_counts(wb, q, jb), present=win_present,
                           expected=win_expected, largest=largest)
                cmp.rows.append(row)
                block_cols.append(_block_columns(blocks, f"volumes/{name}/window/{q}", jb, a.size))
                cmp.series[(name, q, "window")] = (wa["t_start"][ja], a, b, se_b)
                cmp.z_series[(name, q, "window")] = row.z_series
        elif not wa:
            cmp.notes.append(f"volume {name!r}: the exact file has no window averages; power terms "
                             "not compared")
    if abs(float(ref["attrs"].get("window", 0)) - float(other["attrs"].get("window", 0))) > tol:
        raise ResultFileError("the files' power windows differ; rerun with the same [time] window")
    z = np.concatenate([r for r in all_z]) if all_z else np.array([])
    correlation = None
    if all_z and all(c is not None for c in block_cols):
        cols = np.concatenate([c for c, row in zip(block_cols, cmp.rows) if row.agreement], axis=1)
        finite = np.concatenate([m for m in cmp._finite_masks])
        correlation = block_correlation(cols[:, finite])
        cmp.notes.append(f"RMS bound allows for the correlation between points, estimated from "
                         f"{cols.shape[0]} blocks of worlds")
    else:
        cmp.notes.append("RMS bound assumes independent points (no block means in the file)")
    n_unresolved = sum(r.unresolved_t.size for r in cmp.rows)
    if n_unresolved:
        cmp.notes.append(f"{n_unresolved} point(s) not resolved by the {n_other} worlds are left "
                         "out of the verdict (listed above)")
    n_missing = sum(r.missing_t.size for r in cmp.rows)
    if n_missing:
        cmp.notes.append(f"{n_missing} point(s) with fewer than {MIN_WORLDS_RESOLVED} "
                         f"contributing worlds are judged all the same: the exact occupancy "
                         f"expects at least {MISSING_WORLDS} worlds in the volume there")
    cmp.overall = agreement(z, alpha, correlation)
    return cmp


def _electrons_in_volume(va, vb, ia, ib, n_worlds):
    """M N_Omega at the compared frames: the electrons of the M worlds in the volume, the larger
    of the two files' N_Omega; None without worlds or particle counts."""
    if not n_worlds or "particles" not in va["data"] or "particles" not in vb["data"]:
        return None
    n = np.fmax(np.abs(va["data"]["particles"][ia]), np.abs(vb["data"]["particles"][ib]))
    return n_worlds * np.nan_to_num(n)


def _window_max(t_frames, values, t_start, window, tol):
    """Largest of ``values`` over the frames in [t_start, t_start + window] (the nearest frame
    when none falls inside)."""
    inside = (t_frames >= t_start - tol) & (t_frames <= t_start + window + tol)
    if np.any(inside):
        return float(np.max(values[inside]))
    return float(values[np.argmin(np.abs(t_frames - (t_start + 0.5 * window)))])


def _counts(data: dict, q: str, index):
    """The stored counts of contributing worlds of ``q`` at ``index``, or None (older files)."""
    c = data.get(f"{q}_worlds")
    return None if c is None else np.asarray(c, dtype=float)[index]


def _block_columns(blocks, key, index, size):
    if not blocks or key not in blocks:
        return None
    return blocks[key][:, index].reshape(-1, size)


def _row(volume, q, kind, units, a, b, se_a, se_b, alpha, all_z, masks=None,
         n_samples=None, scale=None, t=None, electrons=None, worlds=None, present=None,
         expected=None, largest=None) -> Row:
    """One row of the table; ``worlds``, ``present``, ``expected`` (per point: the other file's
    contributing worlds of ``q``, its worlds present in the volume, the exact occupancy's lower
    bound on the present worlds) select the rules of the module docstring, None the older ones."""
    diff = np.abs(a - b)
    counted = worlds is not None and se_b is not None and bool(n_samples)
    missing = np.zeros(np.shape(a), dtype=bool)
    floor = None
    if counted:
        M = float(n_samples)
        n = worlds.astype(float)
        # sum_i y_i^2 = M2 + M mean^2, with M2 = se^2 M (M - 1). One contributing world's value:
        # the RMS over the n of them at the point, and over every (world, point) of the row (where
        # the worlds at a point carry only a far tail of the term, the row's value is the one a
        # world that does carry it has)
        sum_sq = np.asarray(se_b, dtype=float) ** 2 * M * (M - 1) + M * np.asarray(b) ** 2
        sum_sq = np.nan_to_num(sum_sq)
        row_value = np.sqrt(np.sum(sum_sq) / np.sum(n)) if np.sum(n) > 0 else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            point_value = np.where(n > 0, np.sqrt(sum_sq / np.maximum(n, 1.0)), 0.0)
        floor = np.fmax(point_value, row_value) / M
        if present is not None and expected is not None:
            missing = (worlds < MIN_WORLDS_RESOLVED) & (present < MIN_WORLDS_RESOLVED) & (
                np.asarray(expected) >= MISSING_WORLDS)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(missing, np.abs(a) / np.maximum(expected, 1.0), 0.0)
            floor = np.fmax(floor, share)
    elif n_samples and se_b is not None:
        if scale is None:
            scale = float(np.nanmax(np.abs(a))) if a.size else 0.0
        # Files without counts: an estimate from M worlds cannot resolve values below ~(series
        # scale)/M: where only a few worlds contribute (a volume's first arrivals, a smooth
        # window's far tail) the sample standard error understates the error, so it is floored at
        # that granularity. (For window terms the scale is the largest of the volume's power
        # terms: a term that is zero up to round-off, such as `absorbed` far from the layers, must
        # not set it.)
        floor = np.full(np.shape(b), scale / n_samples)
    z = z_scores(a, b, se_a, se_b if floor is None else np.hypot(se_b, floor))
    nothing = np.zeros(z.shape, dtype=bool)
    if counted:
        # 0 in both files up to round-off (ROUND_OFF of the largest exact value of the volume's
        # quantities of this kind, ``largest``): nothing to resolve
        tiny = ROUND_OFF * (largest if largest is not None else
                            (float(np.nanmax(np.abs(a))) if a.size else 0.0))
        zero = (np.abs(a) <= tiny) & (np.abs(b) <= tiny)
        resolved = (worlds >= MIN_WORLDS_RESOLVED) | missing | zero
        nothing = zero & ~missing
    elif electrons is None or se_b is None:
        resolved = np.ones(z.shape, dtype=bool)
    else:
        resolved = np.asarray(electrons) >= MIN_ELECTRONS_RESOLVED
    judged = np.isfinite(z) & resolved & ~nothing
    ag = agreement(z[judged], alpha) if np.any(judged) else None
    if ag is not None:
        all_z.append(z[judged])
        if masks is not None:
            masks.append(judged)
    scale = float(np.nanmax(np.abs(a))) if a.size else 0.0
    row = Row(volume, q, kind, units, int(a.size), float(np.nanmax(diff)) if a.size else 0.0,
              scale, ag)
    if t is not None:
        row.z_series = (np.asarray(t), z, resolved)
        row.missing_t = np.asarray(t)[missing]
        if not np.all(resolved):
            row.unresolved_t = np.asarray(t)[~resolved]
            if electrons is not None:
                row.unresolved_electrons = np.asarray(electrons)[~resolved]
            if counted:
                row.unresolved_worlds = worlds[~resolved]
            row.unresolved_z = z[~resolved]
    return row


def plot_comparison(cmp: Comparison, path) -> None:
    """One row per volume: E_Omega and each windowed term, exact line against the other with bands,
    and a last panel of every z-score of the volume against time with the verdict's bound (points
    not resolved by the worlds drawn hollow and grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bohmpower.plot import _label

    volumes = sorted({k[0] for k in cmp.series})
    other_label = ("CW" if cmp.other_source.startswith("conditional") else
                   "exact trajectories" if cmp.other_source.startswith("exact Bohmian") else
                   "other file")
    quantities = [("energy", "frame")] + [(q, "window") for q in WINDOWED]
    quantities = [qk for qk in quantities if any((v, *qk) in cmp.series for v in volumes)]
    units = {(r.volume, r.quantity): r.units for r in cmp.rows}
    fig, axes = plt.subplots(len(volumes), len(quantities) + 1, squeeze=False,
                             figsize=(3.2 * (len(quantities) + 1), 2.6 * len(volumes)))
    for i, v in enumerate(volumes):
        for j, (q, kind) in enumerate(quantities):
            ax = axes[i, j]
            if (v, q, kind) not in cmp.series:
                ax.set_visible(False)
                continue
            t, a, b, se = cmp.series[(v, q, kind)]
            if kind == "window":  # at the window centres, as `bohmpower plot` draws them
                t = t + 0.5 * cmp.window
            largest = max(float(np.nanmax(np.abs(cmp.series[k][1]))) for k in cmp.series
                          if k[0] == v and k[2] == kind and len(cmp.series[k][1]))
            round_off = float(np.nanmax(np.abs(a))) <= 1e-10 * largest if len(a) else True
            ax.plot(t, a, "k-", lw=1.2, label="exact (grid)")
            ax.plot(t, b, "C1-", lw=1.0, label=other_label)
            if se is not None:
                ax.fill_between(t, b - 2 * se, b + 2 * se, color="C1", alpha=0.3, label="±2 s.e.")
            ax.set_title(f"{v}: {q}" + (" (window avg)" if kind == "window" else "")
                         + ("\nexact value is round-off only" if round_off else ""), fontsize=9)
            ax.set_ylabel(_label(units.get((v, q), "")), fontsize=8)
            ax.set_xlabel("t (window centre)" if kind == "window" else "t", fontsize=8)
            ax.tick_params(labelsize=7)
        _z_panel(axes[i, len(quantities)], cmp, v, quantities)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _z_panel(ax, cmp: Comparison, volume: str, quantities) -> None:
    """z(t) of every compared quantity of ``volume``, with the Bonferroni bound of the verdict."""
    bound = cmp.overall.max_bound if cmp.overall is not None and cmp.overall.n_points else None
    drawn = False
    for k, (q, kind) in enumerate([("particles", "frame")] + list(quantities)):
        if (volume, q, kind) not in cmp.z_series:
            continue
        t, z, resolved = cmp.z_series[(volume, q, kind)]
        if kind == "window":
            t = t + 0.5 * cmp.window
        if not np.any(np.isfinite(z)):
            continue
        drawn = True
        ax.plot(t[resolved], z[resolved], ".", ms=3, color=f"C{k}", label=q)
        if not np.all(resolved):
            ax.plot(t[~resolved], z[~resolved], "o", ms=3, mfc="none", color="0.6", lw=0)
    if bound is not None:
        for sign in (1, -1):
            ax.axhline(sign * bound, color="k", ls="--", lw=0.8)
        ax.text(0.01, 0.98, f"--- Bonferroni bound ±{bound:.2f}", transform=ax.transAxes,
                fontsize=6, va="top")
    ax.set_title(f"{volume}: z = (exact - other) / s.e.\nhollow grey: not resolved by "
                 f"{cmp.n_worlds or 0} worlds", fontsize=8)
    ax.set_xlabel("t (frames; windows at their centres)", fontsize=8)
    ax.tick_params(labelsize=7)
    if drawn:
        ax.legend(fontsize=6, loc="lower left", ncol=2, markerscale=1.5)
