"""Writes the .npy fixtures in this folder with NumPy and ml_dtypes (run by hand; the files are
committed, so the tests need neither). Used versions: NumPy 2.4.6, ml_dtypes 0.6.0.

  python3 -m venv /tmp/np && /tmp/np/bin/pip install numpy ml_dtypes
  /tmp/np/bin/python examples/testdata/make_testdata.py

step/ is one decode step as an engine would capture it (bf16 GQA, per-query-head sinks, ragged
rows with start offsets and one empty row), with the output computed here in float64 NumPy,
independently of ragged: expected_output.npy (f32) and expected_lse.npy.
"""
import os

import ml_dtypes
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
os.chdir(here)

# Single files for the reader's tests.
np.save('f32_2x3.npy', np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5)
np.save('bf16_vec.npy', np.array([1.5, -2.0, 3.140625, 0.0], dtype=ml_dtypes.bfloat16))
np.save('f16_empty.npy', np.zeros((0, 4), np.float16))
np.save('i32_scalar.npy', np.array(7, dtype=np.int32))
np.save('fortran.npy', np.asfortranarray(np.arange(4, dtype=np.float32).reshape(2, 2)))
np.save('f64.npy', np.ones(3))
with open('f32_v2.npy', 'wb') as f:
    np.lib.format.write_array(f, np.array([1, 2, 3], np.float32), version=(2, 0))
with open('f16_v3.npy', 'wb') as f:
    np.lib.format.write_array(f, np.array([[0.5], [-1]], np.float16), version=(3, 0))

# One decode step.
rng = np.random.default_rng(7)
B, S, HQ, HKV, D = 4, 48, 8, 2, 32
bf16 = ml_dtypes.bfloat16
q = rng.standard_normal((B, HQ, D)).astype(bf16)
k = rng.standard_normal((B, S, HKV, D)).astype(bf16)
v = rng.standard_normal((B, S, HKV, D)).astype(bf16)
start = np.array([0, 5, 17, 30], np.int32)
end = np.array([48, 29, 17, 31], np.int32)  # row 2 is empty, row 3 has one position
aux = rng.standard_normal((HQ, 1)).astype(np.float32)

out = np.zeros((B, HQ, D))
lse = np.zeros((B, HQ))
scale = 1.0 / np.sqrt(D)
for b in range(B):
    for h in range(HQ):
        g = h // (HQ // HKV)
        ks = k[b, start[b]:end[b], g, :].astype(np.float64)
        vs = v[b, start[b]:end[b], g, :].astype(np.float64)
        x = scale * ks @ q[b, h].astype(np.float64)
        a = aux[h].astype(np.float64)
        m = max(x.max(initial=-np.inf), a.max())
        denom = np.exp(x - m).sum() + np.exp(a - m).sum()
        out[b, h] = (np.exp(x - m) @ vs) / denom if len(x) else 0.0
        lse[b, h] = m + np.log(denom)

np.save('step/query.npy', q)
np.save('step/key.npy', k)
np.save('step/value.npy', v)
np.save('step/sequence_start.npy', start)
np.save('step/sequence_end.npy', end)
np.save('step/softmax_aux.npy', aux)
np.save('step/expected_output.npy', out.astype(np.float32))
np.save('step/expected_lse.npy', lse.astype(np.float32))
