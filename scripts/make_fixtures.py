#!/usr/bin/env python3
"""Regenerates fixtures/ from the shared datasets (../shared/data), keeping them small.

    python3 scripts/make_fixtures.py [DATA_DIR]

Every fixture is a slice of a public dataset; fixtures/README.md records where each comes from.
"""
import json
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data")
out = os.path.join(here, "..", "fixtures")
meta = json.load(open(os.path.join(data, "datasets.json")))


def save(name, arr):
    np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(arr))


# Tables: HEP objects, one row per object.
save("cms_ak4jets", np.load(os.path.join(data, "hep_cms_nanoaod_ak4jets.npy")))
save("delphes_16k", np.load(os.path.join(data, "hep_delphes_genparticles.npy"))[:16384])
save("nexo_8k", np.load(os.path.join(data, "hep_nexo_g4_deposits.npy"))[:8192])
# Fields: a CFD time series (3-D) and one ocean variable (a 2-D image).
save("cfd_decay_ux", np.load(os.path.join(data, "cfd_ns2d_decay_50x50_t60_ux.npy")))
save("ocean_temp", np.load(os.path.join(data, "ocean_pop_uvt.npy"))[2])
# A telescope frame's science and error planes, stacked (2 x 128 x 128 around a cluster's core).
save("hst_frame", np.load(os.path.join(data, "astro_hst_acs_47tuc.npy"))[:, 448:576, 448:576])
# float64: tau pT values widened (a 1-D field).
save("tau_pt_f64", np.load(os.path.join(data, "hep_tau_pt_1M.npy"))[:40000, 0].astype(np.float64))

names = {
    "cms_ak4jets": meta["hep_cms_nanoaod_ak4jets"]["columns"],
    "delphes_16k": meta["hep_delphes_genparticles"]["columns"],
    "nexo_8k": meta["hep_nexo_g4_deposits"]["columns"],
}
for k, cols in names.items():
    with open(os.path.join(out, k + ".columns"), "w") as f:
        f.write(",".join(cols) + "\n")
