"""The uproot path (examples/uproot_nanoaod.py): a NanoAOD-like ROOT file written and read with
uproot, its jets flattened into a table, compressed with NanoAOD's precisions
(examples/nanoaod.bounds), restored with ak.unflatten and checked here with NumPy: the same
fields and jets per event, every float within its bound, the integers and counts exact.

Needs uproot and awkward (scripts/test_python.sh installs them).
"""

import importlib.util
import os

import numpy as np
import pytest

import awkward as ak
import uproot

import baler

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "uproot_nanoaod.py")
EVENTS = 3000

# NanoAOD's precisions, written out here rather than read from the bounds file, so that the
# file is checked too: mantissa bits per float branch (|x - x'| <= 2^-(N+1) |x|).
BITS = {"Jet_pt": 10, "Jet_eta": 12, "Jet_phi": 12, "Jet_mass": 10, "Jet_btagDeepFlavB": 10, "MET_pt": 10}
INTS = ["Jet_jetId", "Jet_hadronFlavour"]


@pytest.fixture(scope="module")
def nano():
    spec = importlib.util.spec_from_file_location("uproot_nanoaod", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root_file(nano, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("nano") / "events.root")
    size = nano.write_root(path, nano.make_events(EVENTS, seed=7))
    return path, size


def within_bits(orig, back, bits):
    x = orig.astype(np.float64)
    y = back.astype(np.float64)
    return np.abs(x - y) <= 2.0 ** -(bits + 1) * np.abs(x)


def test_the_file_is_nanoaod_like(root_file):
    path, size = root_file
    assert size == os.path.getsize(path) > 0
    with uproot.open(path) as f:
        tree = f["Events"]
        assert isinstance(tree, uproot.TTree)
        assert tree.num_entries == EVENTS
        assert set(tree.keys()) == {"nJet", "MET_pt", *BITS, *INTS}
        assert tree["nJet"].interpretation.from_dtype == np.dtype(">i4")  # int32 (NanoAOD's are uint32: exact as float32 either way)
        a = tree.arrays()
    for name in BITS:
        assert ak.flatten(a[name], axis=None).layout.dtype == np.float32
    for name in INTS:
        assert ak.flatten(a[name]).layout.dtype == np.int32
    n = ak.to_numpy(a["nJet"])
    assert np.array_equal(n, ak.to_numpy(ak.num(a["Jet_pt"])))
    assert n.min() == 0 and 9 <= n.max() <= 14 and 3 < n.mean() < 6
    pt = ak.flatten(a["Jet_pt"])
    assert ak.all(pt >= 15)
    assert ak.all(a["Jet_pt"][:, :-1] >= a["Jet_pt"][:, 1:])  # pt-ordered within each event
    assert ak.all(abs(a["Jet_eta"]) < 4.7)
    assert ak.all((a["Jet_phi"] > -np.pi) & (a["Jet_phi"] <= np.pi))
    assert ak.all((a["Jet_btagDeepFlavB"] >= 0) & (a["Jet_btagDeepFlavB"] <= 1))
    assert set(np.unique(ak.to_numpy(ak.flatten(a["Jet_jetId"])))) <= {0, 2, 6}
    assert set(np.unique(ak.to_numpy(ak.flatten(a["Jet_hadronFlavour"])))) == {0, 4, 5}


def test_flatten_compress_restore_within_every_bound(nano, root_file):
    path, _ = root_file
    arrays, jets, names, event, event_names = nano.read_jets(path)
    assert jets.dtype == np.float32 and jets.shape == (int(ak.sum(arrays["nJet"])), 7)
    assert names == list(BITS)[:5] + INTS
    assert event.shape == (EVENTS, 2) and event_names == ["nJet", "MET_pt"]

    jet_blob, event_blob = nano.compress(jets, names, event, event_names)
    for blob in (jet_blob, event_blob):
        assert blob[:8] == b"\x89BALER\r\n"
    assert len(jet_blob) < jets.nbytes / 2  # the bounds were used, not lossless throughout
    # The tables themselves, straight from baler.
    back = baler.decompress(jet_blob)
    assert back.dtype == np.float32 and back.shape == jets.shape
    for i, name in enumerate(names):
        if name in INTS:
            assert np.array_equal(back[:, i].view(np.uint32), jets[:, i].view(np.uint32)), name
        else:
            ok = within_bits(jets[:, i], back[:, i], BITS[name])
            assert ok.all(), f"{name}: {np.count_nonzero(~ok)} values beyond bits:{BITS[name]}"
    ev = baler.decompress(event_blob)
    assert np.array_equal(ev[:, 0].view(np.uint32), event[:, 0].view(np.uint32))
    assert within_bits(event[:, 1], ev[:, 1], BITS["MET_pt"]).all()

    # The jagged arrays rebuilt with ak.unflatten: as uproot read them, within the bounds.
    restored = nano.restore(jet_blob, event_blob, names, event_names)
    assert sorted(restored.fields) == sorted(arrays.fields)
    assert len(restored) == EVENTS
    assert np.array_equal(ak.to_numpy(restored["nJet"]), ak.to_numpy(arrays["nJet"]))
    counts = ak.to_numpy(ak.num(arrays["Jet_pt"]))
    for name in names:
        assert np.array_equal(ak.to_numpy(ak.num(restored[name])), counts), name
        a = ak.to_numpy(ak.flatten(arrays[name]))
        b = ak.to_numpy(ak.flatten(restored[name]))
        assert a.dtype == b.dtype
        if name in INTS:
            assert np.array_equal(a, b), name
        else:
            assert within_bits(a, b, BITS[name]).all(), name
    assert within_bits(ak.to_numpy(arrays["MET_pt"]), ak.to_numpy(restored["MET_pt"]), BITS["MET_pt"]).all()
    # The example's own check agrees, and every float branch used its bound (the largest error
    # is within a few percent of what is allowed, so a looser bound would have been caught).
    worst = nano.check_restored(arrays, restored)
    for name in BITS:
        assert 0.5 < worst[name] <= 1.0, (name, worst[name])
    for name in INTS + ["nJet"]:
        assert worst[name] == 0.0


def test_the_check_catches_a_value_beyond_its_bound_and_a_wrong_count(nano, root_file):
    path, _ = root_file
    arrays, jets, names, event, event_names = nano.read_jets(path)
    jet_blob, event_blob = nano.compress(jets, names, event, event_names)
    restored = nano.restore(jet_blob, event_blob, names, event_names)
    # One eta moved by 2^-12 relative: within bits:10, beyond NanoAOD's bits:12.
    i = int(np.argmax(np.abs(jets[:, 1])))
    bad = jets.copy()
    bad[i, 1] = np.float32(jets[i, 1] * (1 + 2.0**-12))
    wrong = nano.restore(baler.compress(bad, bound="lossless", names=names), event_blob, names, event_names)
    with pytest.raises(AssertionError, match="Jet_eta"):
        nano.check_restored(arrays, wrong)
    # A count moved by one jet from an event to the next: the same jets, other events.
    ev = event.copy()
    j = int(np.argmax(ev[:-1, 0]))
    ev[j, 0] -= 1
    ev[j + 1, 0] += 1
    shifted = nano.restore(jet_blob, baler.compress(ev, bound="lossless", names=event_names), names, event_names)
    with pytest.raises(AssertionError):
        nano.check_restored(arrays, shifted)
    nano.check_restored(arrays, restored)


def test_the_example_runs_and_prints_its_sizes(nano, tmp_path):
    import io

    out = io.StringIO()
    figures = nano.run(EVENTS, str(tmp_path), seed=3, out=out)
    text = out.getvalue()
    assert figures["events"] == EVENTS and figures["jets"] > 3 * EVENTS
    assert figures["raw_bytes"] == figures["jets"] * 7 * 4 + EVENTS * 2 * 4
    assert figures["root_bytes"] == os.path.getsize(tmp_path / "nanoaod_like.root")
    assert figures["baler_bytes"] < figures["root_bytes"] and figures["ratio"] > 2
    for word in ("events", "raw float32 columns", "ROOT file", "baler containers", "ratio"):
        assert word in text
