"""The CW run loop's handling of a sample that goes numerically bad (issue: numerical health).

A failure stops the run with the sample, electron and step unless --discard-bad-samples is given;
then the sample is dropped from its block (the block is recomputed without it), counted in
/diagnostics/discarded_samples, and the run is refused when more than 1% of the samples fail.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bohmpower import cli
from bohmpower.cw import engine
from bohmpower.driver import CWSolver
from bohmpower.errors import NumericalError
from tests.conftest import make_config, run_dict, write_run_file


def _sections(samples):
    return dict(
        particles={"count": 2, "mass": 1.0, "statistics": "fermion"},
        grid={"x_min": -30.0, "x_max": 30.0, "points": 128, "boundary": "periodic"},
        time={"dt": 0.05, "t_end": 0.5, "save_every": 5},
        interaction={"kind": "soft_coulomb", "softening": 1.0},
        initial={"packet": [{"center": -4.0, "width": 1.5, "wavenumber": 0.6},
                            {"center": 3.0, "width": 1.5, "wavenumber": -0.3}]},
        volume=[{"name": "dev", "x_min": -3.0, "x_max": 3.0}],
        trajectories={"count": samples, "seed": 3, "store": 2},
        method={"exchange": False},
    )


@pytest.fixture
def failing(monkeypatch):
    """Make the given sample ids fail at step 4 (as a NaN in their CW would)."""
    bad = set()
    real_step = engine.CWEnsemble.step

    def step(self):
        if self.step_index + 1 == 4:
            hit = sorted(bad.intersection(int(i) for i in self.sample_ids))
            if hit:
                raise engine.SampleFailure(hit[0], 1, 4, "NaN in the conditional wavefunction")
        return real_step(self)

    monkeypatch.setattr(engine.CWEnsemble, "step", step)
    return bad


def test_a_bad_sample_stops_the_run_with_its_id_electron_and_step(failing):
    failing.add(70)
    solver = CWSolver(make_config(**_sections(130)))
    with pytest.raises(NumericalError) as err:
        solver.run()
    assert err.value.step == 4 and "sample 70, electron 1" in str(err.value)
    assert "--discard-bad-samples" in str(err.value)


def test_discarding_drops_the_sample_and_counts_it(failing, tmp_path):
    failing.add(70)
    path = write_run_file(tmp_path / "run.toml", run_dict(**_sections(130)))
    out = tmp_path / "out.h5"
    assert cli.main(["run", str(path), "-o", str(out), "-q", "--discard-bad-samples"]) == 0
    with h5py.File(out, "r") as f:
        assert f["diagnostics/discarded_samples"][()] == 1
        assert list(f["diagnostics"].attrs["discarded_sample_ids"]) == [70]
    # the surviving samples give exactly the estimates of a run over them alone
    clean = CWSolver(make_config(**_sections(130)))
    ref = clean.run_block(np.array([i for i in range(64, 128) if i != 70]))
    solver = CWSolver(make_config(**_sections(130)), discard_bad_samples=True)
    got = solver.run_block(np.arange(64, 128))
    for key, val in ref.sums.mean.items():
        assert (got.sums.mean[key] == val).all(), key
    assert got.sums.n_samples == 63


def test_discarding_more_than_one_percent_is_refused(failing):
    failing.update({3, 70})  # 2 of 130 samples > 1%
    solver = CWSolver(make_config(**_sections(130)), discard_bad_samples=True)
    with pytest.raises(NumericalError) as err:
        solver.run()
    assert "more than 1%" in str(err.value) and "bias" in str(err.value)
