#!/usr/bin/env python3
"""Write the small .npy fixtures of test/fixtures/npy (numpy >= 1.17; run from the repo root).

The tests read these with rapm's own reader and compare against expected.json, and compare
rapm's writer byte for byte against the files numpy wrote for the same arrays.
    python3 scripts/make-npy-fixtures.py
"""
import json
import os

import numpy as np

out = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'npy')
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20260129)
expected = {}


def save(name, arr, version=None, record=True):
    path = os.path.join(out, name)
    with open(path, 'wb') as f:
        if version is None:
            np.save(f, arr, allow_pickle=False)
        else:
            np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
    if record:
        a = np.asarray(arr)
        vals = a.astype(np.float32) if a.dtype.kind == 'f' else a
        expected[name] = {
            'shape': list(a.shape),
            'descr': a.dtype.str,
            'values': [str(v) if a.dtype.kind == 'i' and a.dtype.itemsize == 8 else float(v) if a.dtype.kind == 'f' else int(v)
                       for v in np.ravel(vals, order='C')],
        }


save('f4_2x3.npy', (np.arange(6, dtype='<f4').reshape(2, 3) * 0.5 - 1).astype('<f4'))
save('f8_3x4.npy', rng.normal(size=(3, 4)).astype('<f8'))
save('i4_5.npy', np.array([-3, 0, 7, 2**31 - 1, -2**31], dtype='<i4'))
save('i8_2x2.npy', np.array([[1, -2], [2**40 + 3, -2**62]], dtype='<i8'))
save('f4_1024.npy', rng.normal(size=1024).astype('<f4'))
save('f4_rows_100x8.npy', rng.normal(size=(100, 8)).astype('<f4'))
save('v2_f4_4x2.npy', rng.normal(size=(4, 2)).astype('<f4'), version=(2, 0))
save('v3_f4_3.npy', rng.normal(size=3).astype('<f4'), version=(3, 0))
save('empty_0x1024.npy', np.zeros((0, 1024), dtype='<f4'))
# Fortran order (2-D, so not also C-contiguous) and a 1-D Fortran-flagged array (same bytes as C).
save('f4_fortran_3x4.npy', np.asfortranarray(np.arange(12, dtype='<f4').reshape(3, 4)), record=False)
# Half floats (features are often saved so): read widened to float32, exactly. Values include
# the largest half, the smallest subnormal, the smallest normal, -0 and inexact thirds/tenths.
save('f2_2x4.npy', np.array([[1.0, -2.0, 65504.0, 2.0**-24], [-0.0, 1 / 3, 2.0**-14, -0.1]], dtype='<f2'))
# Unsupported dtypes.
save('u2_4.npy', np.arange(4, dtype='<u2'), record=False)
save('be_f4_4.npy', np.arange(4, dtype='>f4'), record=False)
save('c8_2.npy', np.array([1 + 2j, 3 - 4j], dtype='<c8'), record=False)

with open(os.path.join(out, 'expected.json'), 'w') as f:
    json.dump(expected, f, separators=(',', ':'))
    f.write('\n')
print('wrote', len(os.listdir(out)), 'files to', os.path.normpath(out))
