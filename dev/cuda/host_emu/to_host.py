#!/usr/bin/env python3
"""Rewrites dev/cuda sources into plain C++ for host_emulation.h (see check_on_cpu.sh).

Usage: to_host.py SRC_DIR DST_DIR [NAME...] (only the NAMEs of SRC_DIR when given). Replaces the inline PTX the files use (approximate ex2/lg2/tanh,
cp.async) with host equivalents, kernel launches `k<<<grid, block[, smem]>>>(args)` with
emu::launch, `extern __shared__` arrays with the emulated block's dynamic shared memory, and shrinks
the device fill kernels' grids (they are grid-stride loops). Exits non-zero if inline PTX it does
not know is left.
"""
import os
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
left = []
for name in sys.argv[3:] or sorted(os.listdir(src)):
    if not (name.endswith('.cu') or name.endswith('.h') or name.endswith('.cuh')):
        continue
    s = open(os.path.join(src, name)).read()
    s = s.replace('asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));', 'y = exp2f(x);')
    s = s.replace('asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));', 'y = log2f(x);')
    s = s.replace('asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));', 'y = tanhf(x);')
    # cp.async of V bf16 (causal_conv1d_forward.cu's cp_async_v): deferred until its wait_group.
    s = re.sub(r'  const unsigned s = static_cast<unsigned>\(__cvta_generic_to_shared\(smem\)\);\n'
               r'  if constexpr \(V == 8\) asm volatile\("cp\.async\.cg[^\n]*\n  else asm volatile\("cp\.async\.ca[^\n]*',
               '  emu::cp_async(smem, gmem, 2 * V);', s)
    s = s.replace('asm volatile("cp.async.commit_group;\\n" ::: "memory");', 'emu::cp_commit();')
    s = s.replace('asm volatile("cp.async.wait_group %0;\\n" ::"n"(N) : "memory");', 'emu::cp_wait(N);')
    s = re.sub(r'extern __shared__ (uint4|float4|float) (\w+)\[\];',
               r'\1* \2 = reinterpret_cast<\1*>(emu::dyn_smem.data());', s)
    s = s.replace('<<<1024, 256>>>', '<<<4, 64>>>')
    s = re.sub(r'([\w:<>, ]+?)<<<(.*?)>>>\((.*?)\);',
               lambda m: f'emu::launch([&] {{ {m.group(1).strip()}({m.group(3)}); }}, {m.group(2)});', s, flags=re.S)
    if re.search(r'\basm\b', re.sub(r'//[^\n]*', '', s)):
        left.append(name)
    open(os.path.join(dst, name), 'w').write(s)
if left:
    sys.stderr.write('inline PTX left (not emulated) in: %s\n' % ', '.join(left))
    sys.exit(1)
