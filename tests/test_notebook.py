"""examples/notebook.ipynb runs from top to bottom (exact vs conditional wavefunctions on the demo,
figures from the DataTree), executed by a Jupyter kernel as a reader would run it."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "notebook.ipynb"


def test_the_example_notebook_executes_and_draws_its_figures(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the notebook is stored without outputs (CI runs it)"
    # a failing cell raises CellExecutionError naming the cell and the exception
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # energy per volume, power terms, space-time maps
    text = "".join(o.get("text", "") for o in outputs)
    assert "overall:" in text and "barrier" in text  # the comparison table was printed
    assert "IProgress not found" not in text
    assert (tmp_path / "notebook_results" / "demo.cw.h5").is_file()
    assert (tmp_path / "notebook_results" / "demo.exact.h5").is_file()
