"""Open systems (bohmpower.devices): injection from Fermi reservoirs and the Landauer check."""

import copy
import math

import numpy as np
import pytest

from bohmpower.config import parse_config
from bohmpower.devices.engine import DEVICE_VOLUME, OpenSolver, build_open_model
from bohmpower.errors import ConfigError
from bohmpower.model.sampling import sample_rng
from tests.conftest import REPO

#: A single smooth barrier between flat leads, a linear drop across it (atomic units, m = 1).
OPEN = {
    "schema": "bohmpower-run/1",
    "title": "open single barrier",
    "particles": {"count": 100},
    "grid": {"x_min": -130.0, "x_max": 130.0, "points": 128, "boundary": "absorbing",
             "absorber_width": 25.0},
    "time": {"dt": 2.8, "t_end": 2800.0, "save_every": 25},
    "potential": [{"kind": "barrier", "center": 0.0, "width": 6.0, "height": 0.04,
                   "smoothing": 1.5}],
    "field": [{"kind": "linear_drop", "bias": 0.02, "x_left": -20.0, "x_right": 20.0}],
    "volume": [{"name": "device", "x_min": -30.0, "x_max": 30.0}],
    "trajectories": {"count": 8, "seed": 7},
    "reservoirs": {"fermi_energy": 0.05, "temperature": 0.0, "packet_width": 12.0,
                   "energy_cells": 8},
    "steady_state": {"warm_up": 1750.0, "batches": 3},
}


def open_run(**changes):
    d = copy.deepcopy(OPEN)
    for key, value in changes.items():
        section, name = key.split(".")
        if isinstance(d[section], list):
            d[section][0][name] = value
        else:
            d[section][name] = value
    return parse_config(d, REPO)


def test_schedule_follows_the_attempt_rule_and_fermi_occupation():
    config = open_run(**{"reservoirs.temperature": 1000.0})
    _, inj, _ = build_open_model(config)
    t0, t_end = inj.period, 40 * inj.period
    n_w = 200
    counts = np.zeros((n_w, 2, inj.n_cells))
    for w in range(n_w):
        s = inj.schedule(sample_rng(1, w), t_end)
        key = s["side"] * inj.n_cells + s["cell"]
        order = np.lexsort((s["time"], key))
        # Pauli exclusion: one electron per state per attempt, the attempts a whole t0 apart
        same = np.diff(key[order]) == 0
        gaps = np.diff(s["time"][order])[same] / t0
        np.testing.assert_allclose(gaps, np.round(gaps), atol=1e-9)
        assert np.all(gaps >= 1 - 1e-9)
        counts[w] = np.bincount(key, minlength=2 * inj.n_cells).reshape(2, inj.n_cells)
        assert np.all(np.abs(s["x0"] - np.array([r.x_inject for r in inj.reservoirs])[s["side"]])
                      <= 3 * inj.width)
        assert np.all(np.diff(s["time"]) >= 0) and s["time"].max() <= t_end
    n_att = t_end / t0
    for side in (0, 1):
        f = inj.occupations(side)
        expected = f * n_att  # random phases: exact in the mean
        # Bernoulli acceptance of ~n_att attempts, plus at most one attempt more or less (phase)
        se = np.sqrt(f * (1 - f) * n_att + f**2 / 4) / np.sqrt(n_w)
        z = (counts[:, side].mean(axis=0) - expected) / se
        assert np.all(np.abs(z) < 4.5), z
    # occupations are Fermi-Dirac of each reservoir, whose mu sits E_F above its own band bottom
    left, right = inj.reservoirs
    assert left.mu - right.mu == pytest.approx(0.02, rel=1e-9)
    kt = 1000.0 * 8.617333262e-5 / 27.211386245988
    for res, side in ((left, 0), (right, 1)):
        e = res.band_bottom + inj.kinetic()
        np.testing.assert_allclose(inj.occupations(side), 1 / (1 + np.exp((e - res.mu) / kt)),
                                   rtol=1e-12)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"grid.boundary": "periodic"}, "grid"),
        ({"grid.points": 32}, "grid.points"),
        ({"reservoirs.energy_cells": 30}, "steady_state.warm_up"),
        ({"reservoirs.packet_width": 40.0}, "reservoirs.x_left"),
        ({"steady_state.warm_up": 4000.0}, "steady_state.warm_up"),
    ],
)
def test_refusals(change, key):
    with pytest.raises(ConfigError) as exc:
        if "grid.boundary" in change:
            d = copy.deepcopy(OPEN)
            d["grid"] = {"x_min": -130.0, "x_max": 130.0, "points": 128}
            parse_config(d, REPO)
        else:
            open_run(**change)
    assert exc.value.key.startswith(key)


def test_refusals_of_what_the_slice_does_not_do():
    d = copy.deepcopy(OPEN)
    d["interaction"] = {"kind": "harmonic", "strength": 1e-4}
    with pytest.raises(ConfigError, match="grows with the distance") as exc:
        parse_config(d, REPO)
    assert exc.value.key == "interaction.kind"
    d = copy.deepcopy(OPEN)
    d["interaction"] = {"kind": "soft_coulomb", "softening": 10.0, "relative_permittivity": 10.0}
    d["reservoirs"]["degeneracy"] = 2
    with pytest.raises(ConfigError, match="independent copy") as exc:
        parse_config(d, REPO)
    assert exc.value.key == "reservoirs.degeneracy"
    d = copy.deepcopy(OPEN)
    d["field"][0].update(time_profile="sine", frequency=0.001)
    with pytest.raises(ConfigError, match='"turn_on"') as exc:
        parse_config(d, REPO)
    assert exc.value.key == "field[0].kind"
    d = copy.deepcopy(OPEN)
    d["initial"] = {"packet": [{"center": 0.0, "width": 5.0, "energy": 0.01}]}
    with pytest.raises(ConfigError, match="empty device"):
        parse_config(d, REPO)
    with pytest.raises(ConfigError, match="exact solver"):
        open_run().check_command("exact")


def test_config_round_trip_and_device_units():
    c = open_run()
    assert parse_config(__import__("tomllib").loads(c.to_toml()), REPO) == c
    assert c.reservoirs.x_left == pytest.approx(-130 + 25 + 36)
    assert c.reservoirs.energy_max == pytest.approx(0.05)  # T = 0: fermi_energy
    assert c.to_atomic() is c


def test_injected_current_equals_landauer_at_three_biases_and_two_temperatures():
    """The check of docs/devices.md, small: 8 worlds per point, z-scores against the Landauer
    current of transfer matrices on the same potential (a 2-4 % systematic of the injection model,
    model_current, is well below the standard errors here)."""
    z_all = []
    for temperature in (0.0, 1000.0):
        for bias in (0.01, 0.02, 0.03):
            config = open_run(**{"field.bias": bias, "reservoirs.temperature": temperature})
            result = OpenSolver(config).run()
            cur = result.current()
            ref = result.landauer
            assert abs(ref["model_current"] / ref["current"] - 1) < 0.06
            z = (cur["mean"] - ref["current"]) / cur["standard_error"]
            z_exit = (cur["exit_mean"] - ref["current"]) / cur["exit_standard_error"]
            assert np.all(np.abs(z) < 4.0), (bias, temperature, cur, ref["current"])
            assert abs(z_exit) < 4.0
            if bias == 0.03:  # a current that can fail: well away from zero
                assert cur["mean"][0] > 3 * cur["standard_error"][0]
                assert cur["exit_mean"] > 3 * cur["exit_standard_error"]
            assert result.lost == 0
            z_all.extend(z)
    # the 12 z-scores together: chi^2 with 12 degrees of freedom below its 0.999 quantile
    # (the two surfaces of one run are correlated, which makes this conservative)
    assert float(np.sum(np.square(z_all))) < 32.9
    assert math.isfinite(sum(z_all))


def _device_units(d: dict) -> dict:
    """The run file in device units (nm, eV, fs), the same physics."""
    from bohmpower.units import AU_TIME_FS, BOHR_NM, HARTREE_EV

    d = copy.deepcopy(d)
    d["units"] = {"system": "device"}
    for k in ("x_min", "x_max", "absorber_width"):
        d["grid"][k] *= BOHR_NM
    for k in ("dt", "t_end"):
        d["time"][k] *= AU_TIME_FS
    p = d["potential"][0]
    p["center"] *= BOHR_NM
    p["width"] *= BOHR_NM
    p["smoothing"] *= BOHR_NM
    p["height"] *= HARTREE_EV
    f = d["field"][0]
    f["bias"] *= HARTREE_EV
    f["x_left"] *= BOHR_NM
    f["x_right"] *= BOHR_NM
    for v in d["volume"]:
        v["x_min"] *= BOHR_NM
        v["x_max"] *= BOHR_NM
    d["reservoirs"]["fermi_energy"] *= HARTREE_EV
    d["reservoirs"]["packet_width"] *= BOHR_NM
    d["steady_state"]["warm_up"] *= AU_TIME_FS
    return d


def test_bohmpower_run_writes_the_steady_state_group_in_device_units(tmp_path):
    import h5py

    from bohmpower.cli import main
    from bohmpower.units import AU_TIME_FS
    from tests.conftest import write_run_file

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 3
    import bohmpower

    atomic = bohmpower.run(parse_config(d, REPO))  # the Python API takes the same path
    saved = bohmpower.save(atomic, tmp_path / "atomic.h5")
    tree = bohmpower.load_result(saved)
    assert tree["steady_state/current"].attrs["units"] == "1/atomic_unit_of_time"
    np.testing.assert_allclose(tree["steady_state/current"].values, atomic.current()["mean"])
    run_file = write_run_file(tmp_path / "open.toml", _device_units(d))
    out = tmp_path / "open.h5"
    assert main(["check", str(run_file)]) == 0
    assert main(["run", str(run_file), "-o", str(out), "--quiet"]) == 0
    assert main(["info", str(out)]) == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["method"] == "open"
        sg = f["steady_state"]
        assert sg["current"].attrs["units"] == "1/fs"
        assert sg["surface"].attrs["units"] == "nm"
        # the same worlds in nm/eV/fs: the same crossings, the current converted
        np.testing.assert_allclose(sg["current"][()] * AU_TIME_FS, atomic.current()["mean"],
                                   rtol=1e-9)
        np.testing.assert_allclose(float(sg["landauer_current"][()]) * AU_TIME_FS,
                                   atomic.landauer["current"], rtol=1e-6)
        assert sg["exits"][()].sum() == atomic.exits.sum()
        assert sg["electrons"].shape == f["time"].shape
        assert np.all(sg["transmission"][()] <= 1 + 1e-12)
        # shot noise (tests/test_devices_noise.py): the attempt period in fs, the counts per world
        noise = atomic.noise()
        assert sg.attrs["attempt_period_units"] == "fs"
        np.testing.assert_allclose(sg.attrs["attempt_period"], noise["period"] * AU_TIME_FS,
                                   rtol=1e-12)
        assert sg["transmitted_counts"].shape == (3, noise["periods"])
        assert sg.attrs["noise_periods"] == noise["periods"]
        np.testing.assert_allclose(sg["cell_transmission_model"][()],
                                   np.stack(atomic.landauer["packet_transmission"]))


def test_a_potential_the_grid_does_not_resolve_is_named():
    resolved = OpenSolver(open_run())
    assert not any("not resolved by the grid" in w for w in resolved.warnings)
    ref = resolved.reference
    assert abs(ref["grid_current"] / ref["current"] - 1) < 0.02
    # a 2-bohr barrier (smoothing 0.5) on a 3.1-bohr grid: the sampled barrier is another barrier
    d = copy.deepcopy(OPEN)
    d["grid"].update(x_min=-200.0, x_max=200.0)
    d["potential"][0].update(width=2.0, smoothing=0.5, height=0.06)
    coarse = OpenSolver(parse_config(d, REPO))
    assert any("not resolved by the grid" in w for w in coarse.warnings)
    assert coarse.reference["grid_current"] < 0.9 * coarse.reference["current"]


def test_worlds_do_not_depend_on_their_block_nor_on_the_rank_count(tmp_path):
    import subprocess
    import sys

    import h5py

    from tests.conftest import write_run_file
    from tests.test_mpi import ENV, MPIEXEC

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 3
    d["time"]["t_end"] = 2100.0  # (shorter: the invariance does not need the steady state)
    d["steady_state"]["warm_up"] = 980.0
    config = parse_config(d, REPO)
    one = OpenSolver(config, block_size=3).run()
    split = OpenSolver(config, block_size=1).run()
    for name in ("crossings", "exits", "exits_total", "injected_total", "electrons"):
        np.testing.assert_array_equal(getattr(one, name), getattr(split, name), err_msg=name)
    # the steady-state power: the same worlds, merged in other blocks (round-off)
    p_one, p_split = one.steady_power(), split.steady_power()
    for q in ("energy", "power", "field_work", "quantum", "boundary_flux"):
        for k in (q, q + "_stderr"):
            np.testing.assert_allclose(p_one[k], p_split[k], rtol=1e-9, atol=1e-15, err_msg=k)
    run_file = write_run_file(tmp_path / "open.toml", d)
    out = tmp_path / "mpi.h5"
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "bohmpower", "run",
                           str(run_file), "-o", str(out), "--quiet"], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["ranks"] == 2
        np.testing.assert_array_equal(f["steady_state/current"][()], one.current()["mean"])
        np.testing.assert_array_equal(f["steady_state/exits"][()], one.exits.sum(axis=0))
        for i, name in enumerate(p_one["volumes"]):
            vg = f[f"steady_state/volumes/{name}"]
            for q in ("power", "field_work", "boundary_flux"):
                np.testing.assert_allclose(vg[q][()], p_one[q][i], rtol=1e-9, atol=1e-15)


#: A GaAs double barrier in device units (nm, eV, fs): sharp barriers (0.2 nm smoothing on a 0.39 nm
#: grid) that a long time step turns into weight at the grid's cut-off.
RTD_SHORT = {
    "schema": "bohmpower-run/1",
    "units": {"system": "device"},
    "particles": {"count": 100, "mass": 0.067},
    "grid": {"x_min": -150.0, "x_max": 150.0, "points": 768, "boundary": "absorbing",
             "absorber_width": 40.0},
    "time": {"dt": 0.5, "t_end": 700.0, "save_every": 40},
    "potential": [{"kind": "double_barrier", "center": 0.0, "width": 2.0, "gap": 5.0,
                   "height": 0.3, "smoothing": 0.2}],
    "field": [{"kind": "linear_drop", "bias": 0.15, "x_left": -10.0, "x_right": 10.0,
               "smoothing": 1.0}],
    "trajectories": {"count": 2, "seed": 2026},
    "reservoirs": {"fermi_energy": 0.03, "temperature": 77.0, "packet_width": 10.0,
                   "energy_cells": 12},
    "steady_state": {"warm_up": 150.0, "batches": 2},
}


def test_an_open_run_whose_time_step_pumps_the_grid_cut_off_stops_with_the_cause():
    """At dt = 0.5 fs the grid's largest kinetic phase is 12 rad per step (check warns) and the
    split step at the sharp barriers fills the top of the spectrum; the velocity field then
    oscillates from point to point and trajectories stall (no electron passed the well in a
    longer run). The run must stop, naming the step, the time in fs and time.dt; at dt = 0.1 fs
    the same device stays resolved."""
    from bohmpower.errors import NumericalError

    d = copy.deepcopy(RTD_SHORT)
    with pytest.raises(NumericalError) as err:
        OpenSolver(parse_config(d, REPO)).run()
    text = str(err.value)
    assert " fs)" in text and "time.dt" in text and "top 10 %" in text and "world " in text
    d["time"]["dt"] = 0.1
    # past the time the long step failed (about 100 fs), with fewer cells (a shorter injection
    # period) so that each is tried in the averaging window
    d["time"]["t_end"] = 300.0
    d["steady_state"]["warm_up"] = 100.0
    d["reservoirs"]["energy_cells"] = 4
    solver = OpenSolver(parse_config(d, REPO))
    result = solver.run()
    assert result.max_present > 0 and result.lost == 0


def test_a_stopped_open_run_resumes_from_its_checkpoint_and_equals_a_straight_run(tmp_path):
    """Every finished block of worlds goes to the checkpoint; a run stopped after its first block
    (SIGTERM, --max-wall-time) resumes with the rest, even in other blocks, and gives the straight
    run's counts exactly and its power to round-off, the transient record of a bias switched on
    included. A block file of another run is refused."""
    from bohmpower.checkpoint import Checkpoint, run_identity
    from bohmpower.errors import StoppedEarly

    d = copy.deepcopy(OPEN)
    d["trajectories"]["count"] = 3
    d["time"]["t_end"] = 2100.0
    d["steady_state"]["warm_up"] = 980.0
    d["field"][0].update(time_profile="turn_on", t_on=300.0)
    config = parse_config(d, REPO)
    straight = OpenSolver(config, block_size=1).run()
    cp = Checkpoint(tmp_path / "open.h5", run_identity(config))
    calls = []

    def stop_after_one_block():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(StoppedEarly, match="--resume"):
        OpenSolver(config, block_size=1).run(checkpoint=cp, stop_requested=stop_after_one_block)
    assert sorted(cp.open_block_files()) == [(0, 0)]
    resumed = OpenSolver(config, block_size=2).run(checkpoint=cp, resume=True)
    assert sorted(cp.open_block_files()) == [(0, 0), (1, 2)]
    for name in ("crossings", "exits", "exits_total", "injected_total", "electrons", "fates",
                 "undecided", "frame_crossings"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(straight, name),
                                      err_msg=name)
    np.testing.assert_allclose(resumed.ramo, straight.ramo, rtol=1e-12, atol=1e-15)
    p_s, p_r = straight.steady_power(), resumed.steady_power()
    for q in ("energy", "power", "field_work", "boundary_flux"):
        np.testing.assert_allclose(p_r[q], p_s[q], rtol=1e-9, atol=1e-15, err_msg=q)
    t_s, t_r = (r.transient()["power"]["volumes"][DEVICE_VOLUME] for r in (straight, resumed))
    for q in ("energy", "window/power", "window/field_work"):
        np.testing.assert_allclose(t_r[q], t_s[q], rtol=1e-9, atol=1e-15, err_msg=q)
    # a block of another run (another seed) is refused, naming the file
    d2 = copy.deepcopy(d)
    d2["trajectories"]["seed"] = 8
    other = Checkpoint(tmp_path / "open.h5", run_identity(parse_config(d2, REPO)))
    with pytest.raises(ConfigError, match="different run file|another run"):
        OpenSolver(parse_config(d2, REPO), block_size=1).run(checkpoint=other, resume=True)


def test_warm_up_auto_starts_the_averages_at_the_estimated_time_to_steady_state():
    """``warm_up = "auto"`` survives the resolved run file, the solver sets it to its estimate of
    the time to steady state (the slowest cell's passage), and a t_end that leaves less than one
    injection period after it is refused with the t_end that would do."""
    import tomllib

    from bohmpower.devices.engine import steady_state_time

    config = open_run(**{"steady_state.warm_up": "auto", "trajectories.count": 2})
    assert config.steady_state.warm_up == "auto"
    again = parse_config(tomllib.loads(config.to_toml()), REPO)
    assert again == config
    solver = OpenSolver(config)
    expected = steady_state_time(solver.model, solver.injection, 2800.0)
    assert 0 < expected < 2800.0 - solver.injection.period
    assert solver.atomic.steady_state.warm_up == pytest.approx(expected)
    assert solver.config.steady_state.warm_up == pytest.approx(expected)  # atomic units here
    assert not any("shorter than the estimated time" in w for w in solver.warnings)
    result = solver.run()
    assert result.warm_up == pytest.approx(expected)
    with pytest.raises(ConfigError, match=r"lengthen time\.t_end to at least"):
        OpenSolver(open_run(**{"steady_state.warm_up": "auto", "time.t_end": 2100.0}))
    with pytest.raises(ConfigError, match="must be a number"):
        open_run(**{"steady_state.warm_up": "automatic"})
