"""Every backend of the LIF op against the naive reference, on the harness's cases.

``naive`` and ``cpu`` run here; ``triton`` runs the GPU backend's kernels in Triton's CPU
interpreter, in one subprocess for all cases (``TRITON_INTERPRET=1`` must be set before
Triton is imported); ``cuda`` needs a GPU.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.ops.lif import parity

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


#: Triton's interpreter spends seconds on each check and over a minute to start, so every
#: interpreted case runs under ``-m slow`` (``.ci/run`` runs it after the default run); on a
#: GPU ``-m cuda`` runs the compiled kernels.


def _interpreter_checks(session) -> list[str]:
    """The interpreter's check ids that the selected tests of this module read."""
    ids = []
    for item in session.items:
        params = getattr(item, "callspec", None)
        if params is None or item.module.__name__ != __name__:
            continue
        if item.originalname == "test_backend_matches_reference":
            if params.params["backend"] == "triton":
                ids.append(params.params["cid"])
        elif item.originalname == "test_triton_kernels_in_interpreter":
            ids.append(f"extra-{params.params['extra']}")
    return ids


@pytest.fixture(scope="module")
def triton_interpreter(request):
    """``{check id: result line}`` of ``python -m tests.ops.lif.parity triton CHECK ...``
    run with ``TRITON_INTERPRET=1``, on the checks of the selected tests."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    checks = _interpreter_checks(request.session)
    res = subprocess.run([sys.executable, "-m", "tests.ops.lif.parity", "triton", *checks],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    lines = [json.loads(s) for s in res.stdout.splitlines() if s.startswith("{")]
    assert lines, f"no results (exit {res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-3000:]}"
    return {line["id"]: line for line in lines}


def _interpreted(results, cid):
    line = results.get(cid)
    assert line is not None, f"{cid} did not run in the interpreter"
    assert line["ok"], line["error"]
    return line["spikes"]


#: (backend, case) pairs: every case of a synapse the backend has kernels for
PAIRS = [pytest.param(b, cid, marks=[pytest.mark.cuda] if b == "cuda" else
                      [pytest.mark.slow] if b == "triton" else [],
                      id=f"{b}-{cid}")
         for b in parity.BACKENDS for cid in parity.case_ids(backend=b)]


@pytest.mark.parametrize("backend, cid", PAIRS)
def test_backend_matches_reference(backend, cid, request):
    if backend == "triton":
        _interpreted(request.getfixturevalue("triton_interpreter"), cid)
    else:
        parity.check(backend, cid)


@pytest.mark.parametrize("extra", [
    pytest.param(e, marks=[pytest.mark.slow])
    for e in parity.TRITON_EXTRAS])
def test_triton_kernels_in_interpreter(extra, triton_interpreter):
    """The GPU backend's own sort, inference mode, and the layer with its own sort."""
    _interpreted(triton_interpreter, f"extra-{extra}")


def test_cases_exercise_the_kernels():
    """The cases are not vacuous: many spikes, neurons at max_spikes, several neuron blocks
    and reference-time segments, silent and empty cases silent."""
    from batsnn.ops.lif.cpu import conv
    from batsnn.ops.lif.cpu.dense import LANES
    from batsnn.ops.lif.events import SEGMENT

    spikes = {cid: int(parity.reference(cid).counts.sum()) for cid in parity.case_ids()}
    assert sum(spikes.values()) > 1000
    for cid, n in spikes.items():
        assert (n == 0) == ("silent" in cid or "empty" in cid), (cid, n)
    cap = parity.make_case("dense-cap_tmax-small-f64")
    assert (parity.reference(cap.name).counts == cap.p.max_spikes).any()
    assert parity.make_case("dense-partial_reset-blocks-f64").w.shape[0] > LANES
    seg = parity.make_case("dense-dt-segments-f64")
    assert seg.x[seg.x.isfinite()].max() > 2 * SEGMENT * seg.p.tau_s
    # conv: several channel blocks, stride 2 and padding 1, C_in > 1, segments
    blocks = parity.make_case("conv-partial_reset-blocks-f64")
    assert blocks.w.shape[0] > conv.LANES and blocks.value.stride == (2, 2)
    assert blocks.value.padding == (1, 1) and blocks.value.in_shape[0] > 1
    seg = parity.make_case("conv-dt-segments-f64")
    assert seg.x[seg.x.isfinite()].max() > 2 * SEGMENT * seg.p.tau_s


@pytest.mark.parametrize("synapse", list(parity.SYNAPSES))
def test_grid_layers_have_ties(synapse):
    """The grid cases on a random layer are not vacuous: many spikes, and more than a
    fifth of them on the next input's grid point (where exact ties decide)."""
    for neuron in parity.GRID_NEURONS:
        ties, spikes = parity.grid_ties(f"{synapse}-{neuron}-layer-f64")
        assert spikes > 50 and ties > spikes // 5, (neuron, ties, spikes)


@pytest.mark.parametrize("cid", parity.case_ids(synapses=["conv"], layouts=("small", "blocks")))
def test_cpu_conv_public_op_matches_reference(cid):
    """lif_conv2d itself (autograd, 5-D shapes) against the unrolled dense reference."""
    parity.check("cpu", cid, public=True)


def test_cpu_grid_bounds():
    from batsnn.ops.lif import cpu

    parity.check_grid_bounds(cpu)


@pytest.mark.slow
def test_float32_slack_is_the_references_own_conditioning():
    """The float32 slack of :func:`parity.compare` is the float64 reference's own change
    under float32 rounding of its inputs: large on the conv case whose gradient runs
    through a nearly tangent crossing, and no excuse for a real error anywhere."""
    sens = parity.float32_sensitivity("conv-plain-segments-f32")
    ref = parity.reference("conv-plain-segments-f32")
    # a relative input change of 6e-8 moves this gradient by more than 1e-3 of its size
    assert sens.grad_input_times.max() > 1e-3 * ref.g_in.abs().max()
    for name in ("conv-plain-segments-f32", "dense-plain-small-f32"):
        ref = parity.reference(name)
        sens = parity.float32_sensitivity(name)
        parity.compare(name, ref, ref, torch.float32)  # the reference passes itself
        i = int(torch.argmax(ref.g_in.abs()))
        bad = ref.g_in.clone().reshape(-1)
        bad[i] += 0.05 * ref.g_in.abs().max() + 5 * sens.grad_input_times.reshape(-1)[i]
        with pytest.raises(AssertionError, match="grad input_times"):
            parity.compare(name, ref, ref._replace(g_in=bad.reshape(ref.g_in.shape)),
                           torch.float32)
