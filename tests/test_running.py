"Run All in a real Jupyter kernel: `slow_cells` skips the `#| slow` and `#| online` cells, and runs them when asked."
import nbformat
import pytest
from nbclient import NotebookClient

def _run(first:str)->list:
    "Execute a three-cell notebook in a fresh kernel, outside nbdev-test; the text each cell printed."
    srcs = [first, '#| slow\nran_slow = True\nprint("slow ran")', '#| online\nran_online = True',
            "print('ran_slow' in globals(), 'ran_online' in globals())"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in srcs])
    NotebookClient(nb, timeout=120, kernel_name='python3').execute()
    return [''.join(o.get('text', '') for o in c.outputs) for c in nb.cells]

@pytest.fixture(autouse=True)
def not_under_nbdev_test(monkeypatch):
    "The kernel inherits this process's environment: no `IN_TEST`, as in Jupyter."
    monkeypatch.delenv('IN_TEST', raising=False)

@pytest.mark.slow
def test_run_all_skips_flagged_cells_unless_asked():
    out = _run('from imgcls_course.running import slow_cells\nslow_cells()')
    assert 'Skipped: a `#| slow` cell' in out[1] and 'slow ran' not in out[1], out
    assert 'Skipped: a `#| online` cell' in out[2], out
    assert out[3].strip() == 'False False', out
    out = _run('from imgcls_course.running import slow_cells\nslow_cells(run=True, online=True)')
    assert out[1].strip() == 'slow ran' and out[3].strip() == 'True True', out

@pytest.mark.slow
def test_without_the_line_jupyter_runs_everything():
    "The reason for the line: Jupyter itself ignores nbdev's flags."
    out = _run('x = 1')
    assert out[1].strip() == 'slow ran' and out[3].strip() == 'True True', out
