#!/usr/bin/env python3
"""Writes the HDF5 fixtures with h5py (another writer than baler's own, as users' files are).

    python3 scripts/make_h5_fixtures.py [DATA_DIR]     # needs numpy and h5py (PyPI)

The values are slices of the shared datasets (../shared/data); fixtures/README.md lists them.
"""
import json
import os
import sys

import h5py
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "shared", "data")
out = os.path.join(here, "..", "fixtures")
meta = json.load(open(os.path.join(data, "datasets.json")))
names = meta["hep_delphes_genparticles"]["columns"]
delphes = np.load(os.path.join(data, "hep_delphes_genparticles.npy"), mmap_mode="r")
table = np.ascontiguousarray(delphes[:2048])
climate = np.load(os.path.join(data, "climate_echam5_3d.npy"), mmap_mode="r")
# One variable (temperature), 8 levels, every other latitude and longitude, widened to f64.
field = np.ascontiguousarray(climate[0, :8, ::2, ::2].astype(np.float64))

# Several datasets, each stored a different way, as h5py users write them.
with h5py.File(os.path.join(out, "h5py_mixed.h5"), "w") as f:
    # A contiguous 2-D table, names in one comma-separated string attribute.
    d = f.create_dataset("tables/contiguous", data=table)
    d.attrs["columns"] = ",".join(names)
    # The same table chunked along rows, shuffled and gzip-compressed; names as a list.
    d = f.create_dataset("tables/gzip", data=table, chunks=(300, 16), compression="gzip",
                         compression_opts=4, shuffle=True)
    d.attrs["columns"] = names
    # Names as fixed-length byte strings (numpy 'S'), chunked in both dimensions.
    d = f.create_dataset("tables/fixed_names", data=table[:1000], chunks=(128, 5))
    d.attrs["columns"] = np.array(names, dtype="S")
    # A 1-D compound dataset: one float32 field per column.
    rec = np.zeros(len(table), dtype=[(n, "<f4") for n in names])
    for j, n in enumerate(names):
        rec[n] = table[:, j]
    f.create_dataset("tables/compound", data=rec, chunks=(512,), compression="gzip")
    # A compound mixing float32 and float64 fields.
    mixed = np.zeros(700, dtype=[("PT", "<f4"), ("Eta", "<f8"), ("Phi", ">f4")])
    mixed["PT"], mixed["Eta"], mixed["Phi"] = table[:700, 5], table[:700, 6], table[:700, 7]
    f.create_dataset("tables/compound_mixed", data=mixed)
    # A 3-D float64 field, chunked across all axes (chunks do not divide the shape), gzip.
    f.create_dataset("fields/temperature_f64", data=field, chunks=(3, 20, 40),
                     compression="gzip")
    # Big-endian float32, contiguous.
    f.create_dataset("fields/big_endian", data=field[0].astype(">f4"))
    # Not floats: for the error messages.
    f.create_dataset("pid", data=table[:, 13].astype(np.int32))
    f.create_dataset("meta/note", data="not a number")

# One float dataset beside a non-float one, like ../shared/data/*.h5: picked without a name.
with h5py.File(os.path.join(out, "h5py_single.h5"), "w") as f:
    d = f.create_dataset("data", data=table[:1000])
    d.attrs["columns"] = ",".join(names)
    f.create_dataset("columns", data=np.array(names, dtype="S8"))
