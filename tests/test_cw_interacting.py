"""The interacting conditional-wavefunction scheme (ICWF, ``cw.interacting``).

What is checked, each against something independent of the code under test:

- the basis matrices S and K = <Phi_a|H - i d_t|Phi_b> against the same integrals done on the full
  N-electron grid (N = 2 and 3, products and determinants), with the interaction on;
- the identity dS/dt = i (D^+ - D) = i (K - K^+) (H Hermitian) along the basis's own dynamics, with
  interaction on (a wrong potential in the one-body subtraction breaks it);
- without interaction the reconstructed Psi is the exact solver's Psi (every basis function then
  follows the exact one-body dynamics);
- with a strong collision the error of the reconstructed Psi against the exact solver falls as the
  basis grows, and the norm of Psi is held;
- the norm monitor stops a run with its cause; the run file's rules; the whole `bohmpower run`
  pipeline agrees with `bohmpower exact` through `compare`.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from bohmpower.config import default_basis_size, parse_config
from bohmpower.cw.interacting import (
    InteractingEnsemble,
    PairInteraction,
    basis_matrices,
    overlap_derivatives,
    permutations_with_signs,
)
from bohmpower.errors import ConfigError, NumericalError
from tests.conftest import REPO, make_config, run_dict, write_run_file


def _collision(statistics="fermion", lam=1.0, n=2, points=128, t_end=4.0, dt=0.05, L=30.0,
               exchange=None):
    packets = [{"center": -5.0, "width": 1.5, "wavenumber": 1.0},
               {"center": 5.0, "width": 1.5, "wavenumber": -1.0},
               {"center": 0.0, "width": 1.5, "wavenumber": 0.0},
               {"center": -10.0, "width": 1.5, "wavenumber": 0.5},
               {"center": 10.0, "width": 1.5, "wavenumber": -0.5}][:n]
    inter = ({"kind": "soft_coulomb", "softening": 1.0, "relative_permittivity": 1.0 / lam}
             if lam else None)
    if exchange is None:
        exchange = statistics == "fermion"
    return make_config(
        particles={"count": n, "mass": 1.0, "statistics": statistics},
        grid={"x_min": -L, "x_max": L, "points": points, "boundary": "periodic"},
        time={"dt": dt, "t_end": t_end, "save_every": int(round(1.0 / dt))},
        interaction=inter,
        initial={"packet": packets},
        trajectories={"count": 8, "seed": 3},
        method={"scheme": "interacting", "exchange": exchange},
    )


def _model(cfg):
    from bohmpower.model import build_model

    return build_model(cfg, command="run")[0]


def _full_basis(psi, antisymmetric):
    """Phi_b on the full grid, shape (M, n_x, ..., n_x): products or sum_sigma sgn prod."""
    m, n, n_x = psi.shape
    perms, signs = permutations_with_signs(n, antisymmetric)
    out = np.zeros((m,) + (n_x,) * n, dtype=complex)
    for p, sg in zip(perms, signs):
        term = np.ones((m,) + (1,) * n, dtype=complex)
        for ax in range(n):
            orb = list(p).index(ax)  # orbital sitting on coordinate ax
            shape = [m] + [1] * n
            shape[1 + ax] = n_x
            term = term * psi[:, orb, :].reshape(shape)
        out += sg * term
    return out


@pytest.mark.parametrize("n, statistics", [(2, "distinguishable"), (2, "fermion"), (3, "fermion"),
                                           (3, "distinguishable"), (4, "fermion")])
def test_basis_matrices_equal_full_grid_integrals(n, statistics):
    rng = np.random.default_rng(4)
    n_x, m = {2: (48, 3), 3: (20, 2), 4: (10, 2)}[n]
    x = np.linspace(-6.0, 6.0, n_x, endpoint=False)
    dx = x[1] - x[0]
    psi = rng.normal(size=(m, n, n_x)) + 1j * rng.normal(size=(m, n, n_x))
    psi *= np.exp(-(x / 3.0) ** 2)
    X = rng.uniform(-3, 3, size=(m, n))

    def w(r):
        return 1.0 / np.sqrt(np.asarray(r) ** 2 + 1.0)

    anti = statistics == "fermion"
    mats = basis_matrices(psi, X, x, PairInteraction(x, w), anti)
    # reference: <prod_l phi^a_l(x_l)| V^b(x) |A' Phi_b> on the full grid (module Choices)
    prod_a = _full_basis(psi, False)
    full_b = _full_basis(psi, anti)
    grids = np.meshgrid(*([x] * n), indexing="ij")
    vol = dx**n
    pa = prod_a.reshape(m, -1).conj()
    s_ref = pa @ full_b.reshape(m, -1).T * vol
    k_ref = np.zeros((m, m), dtype=complex)
    pair = sum(w(grids[j] - grids[k]) for j in range(n) for k in range(j + 1, n))
    perms, signs = permutations_with_signs(n, anti)
    for b in range(m):
        # (H - i d_t) A' Phi_b = A' [V^b Phi_b]: the one-body part of V^b is tied to the orbital
        # (coordinate j carries phi^b_j), so it is applied before antisymmetrising
        vb = pair - sum(w(grids[j] - X[b, k]) for j in range(n) for k in range(n) if k != j)
        g = vb * prod_a[b]
        ag = sum(sg * np.transpose(g, p) for p, sg in zip(perms, signs))
        k_ref[:, b] = pa @ ag.ravel() * vol
    scale = np.abs(k_ref).max()
    np.testing.assert_allclose(mats.s, s_ref, rtol=0, atol=1e-12 * np.abs(s_ref).max())
    np.testing.assert_allclose(mats.k, k_ref, rtol=0, atol=1e-11 * scale)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("anti", [True, False])
def test_loewdin_derivatives_equal_the_permutation_sums(n, anti):
    """The overlap det O (or prod O_ll) and its first and second derivatives in the one-body
    overlaps, by minors, equal the sums over all N! permutations (up to N = 6: 720 terms), also
    for a singular O (two equal rows: det 0, cofactors not all zero)."""
    import itertools

    rng = np.random.default_rng(n)
    ov = rng.normal(size=(5, n, n)) + 1j * rng.normal(size=(5, n, n))
    if n >= 2:
        ov[-1, 1] = ov[-1, 0]  # singular
    s, d1, d2 = overlap_derivatives(ov, anti)
    perms, signs = permutations_with_signs(n, anti)
    s_ref = np.zeros(5, dtype=complex)
    d1_ref = np.zeros_like(ov)
    d2_ref = {jk: np.zeros_like(ov) for jk in itertools.combinations(range(n), 2)}
    for p, sg in zip(perms, signs):
        cols = ov[:, p, np.arange(n)]  # O_{sigma l, l}
        s_ref += sg * np.prod(cols, axis=-1)
        for j in range(n):
            d1_ref[:, p[j], j] += sg * np.prod(np.delete(cols, j, axis=-1), axis=-1)
            for k in range(j + 1, n):
                d2_ref[j, k][:, p[j], p[k]] += sg * np.prod(np.delete(cols, [j, k], axis=-1),
                                                            axis=-1)
    scale = np.abs(s_ref).max()
    np.testing.assert_allclose(s, s_ref, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(d1, d1_ref, rtol=0, atol=1e-13 * np.abs(d1_ref).max())
    assert sorted(d2) == sorted(d2_ref)
    for jk in d2_ref:
        np.testing.assert_allclose(d2[jk], d2_ref[jk], rtol=0,
                                   atol=1e-13 * max(np.abs(d2_ref[jk]).max(), 1.0))
    if anti and n >= 2:
        assert abs(s[-1]) < 1e-12 * scale and np.abs(d1[-1]).max() > 1e-3


@pytest.mark.parametrize("n,anti", [(2, True), (3, True), (3, False), (4, True)])
def test_pair_matrix_kernels_twin_and_table_agree(n, anti):
    """Parseval FFT sums (numba and numpy, in chunks smaller than the pair count) equal the direct
    double sum with the n_x x n_x table of W, and the matrix is Hermitian."""
    rng = np.random.default_rng(3)
    m, n_x = 5, 40
    x = np.linspace(-10.0, 10.0, n_x, endpoint=False)
    pc = PairInteraction(x, lambda r: 1.0 / np.sqrt(np.asarray(r) ** 2 + 0.5))
    psi = rng.normal(size=(m, n, n_x)) + 1j * rng.normal(size=(m, n, n_x))
    ov = np.einsum("aix,blx->abil", psi.conj(), psi)
    perms, signs = permutations_with_signs(n, anti)
    table = pc.table()
    ref = np.zeros((m, m), dtype=complex)
    for p, sg in zip(perms, signs):
        cols = ov[:, :, p, np.arange(n)]
        for j in range(n):
            for k in range(j + 1, n):
                f = psi.conj()[:, None, p[j]] * psi[None, :, j]
                g = psi.conj()[:, None, p[k]] * psi[None, :, k]
                others = [l for l in range(n) if l not in (j, k)]
                rest = np.prod(cols[:, :, others], axis=-1)
                ref += sg * np.einsum("abx,xy,aby->ab", f, table, g) * rest
    for kernels in (True, False):
        got = pc.pair_matrix(psi, ov, anti, chunk=4, kernels=kernels)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    np.testing.assert_allclose(ref, ref.conj().T, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("statistics, n", [("distinguishable", 2), ("fermion", 2), ("fermion", 5)])
def test_overlap_derivative_identity_with_interaction(statistics, n):
    """dS/dt = i (K - K^+) along the basis dynamics (central differences, O(dt^2)); N = 5 fermions
    exercise the Loewdin rules beyond the sizes a full-grid check reaches."""
    cfg = _collision(statistics, lam=1.0, n=n, points=128, dt=0.01, t_end=1.0)
    model = _model(cfg)
    X0 = np.array([[-5.0, 5.0, 0.0, -10.0, 10.0][:n]])
    ens = InteractingEnsemble(model, X0, 6, seed=2)
    for _ in range(20):  # let the basis functions separate
        ens.step()
    s_prev = ens.s
    ens.step()
    k_mid = ens._matrices().k
    ens.step()
    ds = (ens.s - s_prev) / (2 * ens.dt)
    rhs = 1j * (k_mid - k_mid.conj().T)
    assert np.abs(rhs).max() > 1e-3 * np.abs(ens.s).max()  # not trivially 0 = 0
    np.testing.assert_allclose(ds, rhs, rtol=0, atol=2e-3 * np.abs(rhs).max())
    assert abs(ens.norm / ens.norm_history[0] - 1) < 1e-3


def _psi_error(statistics, lam, n_basis, t_end=4.0):
    from bohmpower.driver import ExactSolver

    cfg = _collision(statistics, lam=lam, t_end=t_end)
    ex = ExactSolver(dataclasses.replace(cfg, method=None, trajectories=None))
    for _, _, psi_exact in ex.frames():
        pass
    model = _model(cfg)
    ens = InteractingEnsemble(model, np.array([[-5.0, 5.0]]), n_basis, seed=11)
    for _ in range(cfg.time.n_steps):
        ens.step()
    pr = ens.wavefunction_on_grid()
    vol = model.grid.dx**2
    overlap = abs(np.vdot(psi_exact, pr)) * vol
    dist2 = (np.sum(abs(psi_exact) ** 2) + np.sum(abs(pr) ** 2)) * vol - 2 * overlap
    return float(np.sqrt(max(dist2, 0.0))), ens


@pytest.mark.parametrize("statistics", ["distinguishable", "fermion"])
def test_without_interaction_reconstructed_psi_is_exact(statistics):
    err, ens = _psi_error(statistics, lam=0.0, n_basis=4, t_end=3.0)
    assert err < 1e-6, err
    assert abs(ens.norm - 1.0) < 1e-9


def test_error_falls_as_the_basis_grows_strong_collision():
    errs = {}
    for m in (8, 32):
        errs[m], ens = _psi_error("fermion", lam=1.0, n_basis=m)
        assert abs(ens.norm - 1.0) < 5e-3
    # measured: 0.075 (8), 0.022 (32) at t = 4; the state-vector error, not a Monte Carlo number
    assert errs[32] < 0.5 * errs[8], errs
    assert errs[32] < 0.05, errs


def test_norm_drift_stops_with_its_cause():
    cfg = _collision("fermion", lam=1.0, t_end=2.0)
    model = _model(cfg)
    for cutoff, remedy in ((1e-12, "overlap_cutoff (now 1e-12) to 1e-10 (the default)"),
                           (1e-10, "raise method.overlap_cutoff (now 1e-10) to 1e-8"),
                           (1e-8, "raise method.basis_size")):
        # below 1e-8 the message names the cutoff (the measured cause of a runaway norm at large
        # M, docs/interacting.md): the default from a smaller one, then 1e-8; at 1e-8 and above
        # the basis size
        ens = InteractingEnsemble(model, np.array([[-5.0, 5.0]]), 8, seed=11, norm_tolerance=1e-13,
                                  overlap_cutoff=cutoff)
        with pytest.raises(NumericalError, match="norm of the reconstructed Psi drifted") as exc:
            for _ in range(cfg.time.n_steps):
                ens.step()
        assert remedy in str(exc.value) and "S rank" in str(exc.value)


@pytest.mark.parametrize("statistics", ["distinguishable", "fermion"])
def test_energy_of_the_reconstructed_psi_equals_its_grid_energy(statistics):
    """<H> from the basis matrices equals <Psi|H|Psi> / <Psi|Psi> of the same Psi on the full grid with
    the exact propagator's grid Hamiltonian (FFT kinetic term along each axis, the pair sum on the grid
    points) while the basis moves through a strong collision; in this closed, undriven cell it moves,
    and stays within the energy tolerance."""
    from bohmpower.exact.hamiltonian import pair_sum

    cfg = _collision(statistics, lam=1.0, t_end=3.0)
    model = _model(cfg)
    ens = InteractingEnsemble(model, np.array([[-5.0, 5.0]]), 12, seed=11)
    assert ens.conserves_energy
    x = model.grid.x
    k2 = (2 * np.pi * np.fft.fftfreq(x.size, d=x[1] - x[0])) ** 2 / 2.0
    w = pair_sum(ens.potentials.w, x, 2)
    for step in range(cfg.time.n_steps + 1):
        if step % 20 == 0:
            psi = ens.wavefunction_on_grid()
            h_psi = w * psi
            for axis in (0, 1):
                shape = [1, 1]
                shape[axis] = -1
                h_psi += np.fft.ifft(k2.reshape(shape) * np.fft.fft(psi, axis=axis), axis=axis)
            e_grid = np.real(np.vdot(psi, h_psi)) / np.real(np.vdot(psi, psi))
            assert abs(ens.energy - e_grid) < 1e-10 * abs(e_grid), (step, ens.energy, e_grid)
        if step < cfg.time.n_steps:
            ens.step()
    drift = np.ptp(ens.energy_history) / abs(ens.energy_history[0])
    assert 0 < drift < ens.energy_tolerance


def test_energy_drift_stops_with_its_cause():
    cfg = _collision("fermion", lam=1.0, t_end=2.0)
    ens = InteractingEnsemble(_model(cfg), np.array([[-5.0, 5.0]]), 8, seed=11,
                              energy_tolerance=1e-12)
    with pytest.raises(NumericalError, match="energy of the reconstructed Psi drifted") as exc:
        for _ in range(cfg.time.n_steps):
            ens.step()
    assert "basis_size" in str(exc.value)


def test_run_file_rules():
    with pytest.raises(ConfigError, match="exchange = true"):
        _collision("fermion", exchange=False)
    c = _collision("distinguishable")
    # the default basis is the smallest measured one that reaches 4 s.e. in every term
    # (docs/accuracy.md): 512 for N = 2, 256 for N = 3 and beyond; a given size is kept
    assert c.method.scheme == "interacting" and c.method.basis_size == 512
    assert [default_basis_size(n) for n in (1, 2, 3, 4)] == [512, 512, 256, 256]
    d = run_dict(method={"scheme": "interacting", "basis_size": 24}, trajectories={"count": 4})
    assert parse_config(d, REPO).method.basis_size == 24
    with pytest.raises(ConfigError, match="scheme"):
        parse_config(run_dict(method={"scheme": "icwf"}, trajectories={"count": 4}), REPO)


def test_exchange_scheme_with_interaction_warns():
    c = make_config(particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
                    initial={"packet": [{"center": -5.0, "width": 1.5, "wavenumber": 1.0},
                                        {"center": 5.0, "width": 1.5, "wavenumber": -1.0}]},
                    interaction={"kind": "soft_coulomb", "softening": 1.0},
                    trajectories={"count": 4}, method={"exchange": True})
    assert any("worse than no exchange" in w for w in c.method_warnings())
    quiet = c.replace_section("method", exchange=False)
    assert quiet.method_warnings() == []


def test_run_pipeline_agrees_with_exact(tmp_path):
    """`bohmpower run` with scheme = "interacting" through `compare` against `bohmpower exact`,
    including the split of the quantum term into P_S (quantum_flux) and P_N (quantum_nonlocal)
    that only an explicit Psi gives."""
    from bohmpower.compare import compare_files
    from bohmpower.io import open_result

    data = run_dict(
        particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -30.0, "x_max": 30.0, "points": 128, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": 4.0, "save_every": 10},
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        initial={"packet": [{"center": -5.0, "width": 1.5, "wavenumber": 1.0},
                            {"center": 5.0, "width": 1.5, "wavenumber": -1.0}]},
        volume=[{"name": "left", "x_min": -30.0, "x_max": 0.0},
                {"name": "centre", "x_min": -3.0, "x_max": 3.0, "smoothing": 0.5}],
        trajectories={"count": 128, "seed": 5},
        method={"scheme": "interacting", "exchange": True, "basis_size": 16},
    )
    exact = {k: v for k, v in data.items() if k not in ("method", "trajectories")}
    pe = write_run_file(tmp_path / "exact.toml", exact)
    pc = write_run_file(tmp_path / "cw.toml", data)
    he, hc = tmp_path / "exact.h5", tmp_path / "cw.h5"
    for cmd, path, out in (("exact", pe, he), ("run", pc, hc)):
        r = subprocess.run([sys.executable, "-m", "bohmpower", cmd, str(path), "-o", str(out), "-q"],
                           capture_output=True, text=True, cwd=REPO, timeout=900)
        assert r.returncode == 0, r.stderr
    cmp = compare_files(he, hc)
    assert cmp.overall.n_points > 100
    assert cmp.overall.ok, cmp.table()
    split = {(r.volume, r.quantity) for r in cmp.rows
             if r.quantity in ("quantum_flux", "quantum_nonlocal") and r.agreement is not None}
    assert {("left", "quantum_flux"), ("centre", "quantum_flux"), ("left", "quantum_nonlocal"),
            ("centre", "quantum_nonlocal")} <= split
    with open_result(hc) as f:
        assert f.attrs["scheme"] == "interacting"
        rank = f["diagnostics/basis/rank"][()]
        norm = f["diagnostics/basis/norm"][()]
    assert rank.shape == (81,)  # one value per step, 80 steps and rank.max() <= 16
    assert np.all(np.abs(norm - 1.0) < 0.05)


@pytest.mark.parametrize("statistics, n", [("fermion", 2), ("distinguishable", 2), ("fermion", 3)])
def test_guidance_kernel_matches_numpy_twin(statistics, n):
    cfg = _collision(statistics, lam=1.0, n=n, points=96 if n == 3 else 128, t_end=1.0)
    model = _model(cfg)
    ens = InteractingEnsemble(model, np.zeros((1, n)) + np.arange(n) * 3.0 - 3.0, 5, seed=4)
    for _ in range(5):
        ens.step()
    X = np.random.default_rng(0).uniform(-8, 8, size=(40, n))
    X[3] = np.nan
    fast = ens._ratios(X)
    slow = ens._ratios_numpy(X)
    for a, b in zip(fast, slow):
        ok = np.isfinite(b)
        np.testing.assert_array_equal(np.isfinite(a), ok)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-10, atol=1e-12 * np.abs(b[ok]).max())


def _interacting_run(samples, basis_size=8):
    from tests.test_mpi import cw_run

    d = cw_run(samples=samples)
    d["method"] = {"scheme": "interacting", "exchange": True, "basis_size": basis_size}
    return d


@pytest.mark.mpi
def test_interacting_two_ranks_and_resume_equal_one_straight_run(tmp_path):
    """Every rank propagates the same basis and the ranks share its pair matrix: 1 and 2 ranks agree
    to 1e-10 (150 samples: blocks of 64, 64, 22, split unevenly), and extending a finished 64-sample
    run equals the straight run."""
    from tests.test_mpi import assert_same_results, bohmpower

    path = write_run_file(tmp_path / "run.toml", _interacting_run(150))
    r1 = bohmpower(["run", path, "-o", tmp_path / "one.h5", "-q"])
    r2 = bohmpower(["run", path, "-o", tmp_path / "two.h5", "-q"], ranks=2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert_same_results(tmp_path / "one.h5", tmp_path / "two.h5")
    r3 = bohmpower(["run", path, "-o", tmp_path / "ext.h5", "-q", "--samples", "64",
                    "--keep-checkpoint"])
    r4 = bohmpower(["run", path, "-o", tmp_path / "ext.h5", "-q", "--resume", "--samples", "150",
                    "--overwrite"])
    assert r3.returncode == 0 and r4.returncode == 0, r3.stderr + r4.stderr
    assert_same_results(tmp_path / "one.h5", tmp_path / "ext.h5")


@pytest.mark.mpi
def test_interacting_rank_without_blocks_shares_the_pair_matrix(tmp_path):
    """One block of samples on 2 ranks: rank 1 has no worlds of its own but still computes its chunks
    of the pair matrix (48 basis worlds: 1176 pairs, two chunks, one per rank); the result equals the
    serial run's to 1e-10."""
    from bohmpower.cw.interacting import PAIR_CHUNK
    from tests.test_mpi import assert_same_results, bohmpower

    assert 48 * 49 // 2 > PAIR_CHUNK
    d = _interacting_run(40, basis_size=48)
    path = write_run_file(tmp_path / "run.toml", d)
    r1 = bohmpower(["run", path, "-o", tmp_path / "one.h5", "-q"])
    r2 = bohmpower(["run", path, "-o", tmp_path / "two.h5", "-q"], ranks=2)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert_same_results(tmp_path / "one.h5", tmp_path / "two.h5")


def _run_counting_steps(path, out, *args, sigterm_at=None, ranks=1, tmp=None):
    """``bohmpower run`` in a subprocess (under ``mpiexec -n ranks`` when ranks > 1) that counts
    InteractingEnsemble.step calls (printed last on rank 0's stdout) and, with ``sigterm_at``, has
    rank 0 send itself SIGTERM at that step index."""
    import subprocess
    import sys
    import textwrap

    from tests.test_mpi import ENV, MPIEXEC, REPO

    script = textwrap.dedent(f"""
        import atexit, os, signal, sys
        import bohmpower.cw.interacting as ic
        rank = int(os.environ.get("PMI_RANK", "0"))
        orig = ic.InteractingEnsemble.step
        calls = [0]
        def step(self):
            calls[0] += 1
            if self.step_index == {sigterm_at!r} and rank == 0:
                os.kill(os.getpid(), signal.SIGTERM)
            return orig(self)
        ic.InteractingEnsemble.step = step
        if rank == 0:
            atexit.register(lambda: print("steps", calls[0]))
        from bohmpower.cli import main
        sys.exit(main(["run", {str(path)!r}, "-o", {str(out)!r}, "-q", *{list(args)!r}]))""")
    cmd = [sys.executable, "-c", script]
    if ranks > 1:
        (tmp / "count_steps.py").write_text(script)
        cmd = [MPIEXEC, "-n", str(ranks), sys.executable, str(tmp / "count_steps.py")]
    r = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    return r, int(r.stdout.split()[-1])


def test_sigterm_inside_the_interacting_unit_saves_it_and_resume_continues_it(tmp_path):
    """The interacting scheme runs all of a rank's blocks as one unit: a SIGTERM in the middle of it
    stops the run within STOP_CHECK_STEPS steps with exit 75 (not at the end of the unit), with the
    unit's state in the checkpoint; the resumed run continues from that step (it does the remaining
    steps only) and equals a straight run."""
    from bohmpower.checkpoint import checkpoint_path
    from tests.test_mpi import assert_same_results, bohmpower

    d = _interacting_run(80)
    n_steps = round(d["time"]["t_end"] / d["time"]["dt"])
    path = write_run_file(tmp_path / "run.toml", d)
    out = tmp_path / "stopped.h5"
    r, done = _run_counting_steps(path, out, sigterm_at=12)
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert "stopped at step 20 of" in r.stderr and "--resume continues it" in r.stderr
    assert done == 19 and not out.exists()
    assert (checkpoint_path(out) / "unit-0-of-1.npz").is_file()
    r2, rest = _run_counting_steps(path, out, "--resume")
    assert r2.returncode == 0, r2.stderr
    assert rest == n_steps - 19
    assert not (checkpoint_path(out) / "unit-0-of-1.npz").exists()
    r3 = bohmpower(["run", path, "-o", tmp_path / "straight.h5", "-q"])
    assert r3.returncode == 0, r3.stderr
    assert_same_results(tmp_path / "straight.h5", out)


def test_unit_state_of_another_sample_count_restarts_the_unit(tmp_path):
    """A saved unit whose blocks differ (resumed with another --samples) is not restored: the unit
    starts again from step 1, with a warning, and the result equals a straight run."""
    from tests.test_mpi import assert_same_results, bohmpower

    path = write_run_file(tmp_path / "run.toml", _interacting_run(80))
    out = tmp_path / "stopped.h5"
    r, _ = _run_counting_steps(path, out, sigterm_at=12)
    assert r.returncode == 75, r.stderr
    r2, steps = _run_counting_steps(path, out, "--resume", "--samples", "70")
    assert r2.returncode == 0, r2.stderr
    assert "another set of blocks" in r2.stderr
    n_steps = round(_interacting_run(80)["time"]["t_end"] / _interacting_run(80)["time"]["dt"])
    assert steps == n_steps
    r3 = bohmpower(["run", path, "-o", tmp_path / "straight.h5", "-q", "--samples", "70"])
    assert r3.returncode == 0, r3.stderr
    assert_same_results(tmp_path / "straight.h5", out)


@pytest.mark.mpi
def test_interacting_unit_resumes_on_two_ranks(tmp_path):
    """Two ranks stopped inside their units (a SIGTERM to rank 0, seen by both at the same stop
    check) save a state each; resumed on two ranks they continue from it, and the result equals
    the serial straight run to 1e-10."""
    from bohmpower.checkpoint import checkpoint_path
    from tests.test_mpi import assert_same_results, bohmpower

    d = _interacting_run(150)
    n_steps = round(d["time"]["t_end"] / d["time"]["dt"])
    path = write_run_file(tmp_path / "run.toml", d)
    out = tmp_path / "two.h5"
    r, done = _run_counting_steps(path, out, sigterm_at=12, ranks=2, tmp=tmp_path)
    assert r.returncode == 75, r.stderr
    assert done == 19
    ck = checkpoint_path(out)
    assert (ck / "unit-0-of-2.npz").is_file() and (ck / "unit-1-of-2.npz").is_file()
    r2, rest = _run_counting_steps(path, out, "--resume", ranks=2, tmp=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert rest == n_steps - 19
    r3 = bohmpower(["run", path, "-o", tmp_path / "one.h5", "-q"])
    assert r3.returncode == 0, r3.stderr
    assert_same_results(tmp_path / "one.h5", out)


def test_a_unit_state_of_another_run_is_refused_and_kept(tmp_path):
    """A unit-state file whose run identity is not this run's (copied in, or left by an edited run
    file) is refused on --resume with exit 2 naming the file, and is not deleted."""
    from bohmpower.checkpoint import _IDENTITY_KEY, checkpoint_path

    path = write_run_file(tmp_path / "run.toml", _interacting_run(80))
    out = tmp_path / "stopped.h5"
    r, _ = _run_counting_steps(path, out, sigterm_at=12)
    assert r.returncode == 75, r.stderr
    unit = checkpoint_path(out) / "unit-0-of-1.npz"
    with np.load(unit) as z:
        arrays = dict(z)
    arrays[_IDENTITY_KEY] = np.asarray("0" * 64)
    with open(unit, "wb") as fh:
        np.savez(fh, **arrays)
    r2, _ = _run_counting_steps(path, out, "--resume")
    assert r2.returncode == 2, r2.stderr
    assert "unit-0-of-1.npz was written by another run" in r2.stderr and "Traceback" not in r2.stderr
    assert unit.is_file()
