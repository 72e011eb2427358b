"""``research/gpu_static.py``: the main-loop finder of its SASS instruction counts (no GPU, no NVVM needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SASS = """
        /*0000*/                   S2R R2, SR_TID.X ;
.L_x_0:
        /*0010*/                   LDS R3, [R2] ;
        /*0020*/               @P1 BRA `(.L_x_0) ;
.L_x_1:
        /*0030*/                   LDG.E R4, desc[UR4][R6.64] ;
        /*0040*/                   SHFL.BFLY PT, R5, R4, 0x1, 0x1f ;
.L_x_2:
        /*0050*/                   BRA.DIV UR4, `(.L_x_3) ;
        /*0060*/                   FADD R5, R5, R4 ;
        /*0070*/                   STS [R2], R5 ;
        /*0080*/              @!P0 BRA `(.L_x_1) ;
        /*0090*/                   EXIT ;
.L_x_3:
        /*00a0*/                   MOV R8, R4 ;
        /*00b0*/                   MOV R9, 0x1 ;
        /*00c0*/                   MOV R10, 0x1f ;
        /*00d0*/                   CALL.REL.NOINC `(__cuda_sm70_shflsync_bfly) ;
        /*00e0*/                   BRA `(.L_x_2) ;
"""


def _script():
    spec = importlib.util.spec_from_file_location("gpu_static", ROOT / "research" / "gpu_static.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_loop_is_the_longest_conditional_back_edge():
    loop = _script()._main_loop(SASS)
    # .L_x_1 .. its conditional back edge; not the short first loop, nor the longer span of the
    # divergent-shuffle fallback's unconditional jump back to .L_x_2
    assert loop == ["LDG.E", "SHFL.BFLY", "BRA.DIV", "FADD", "STS", "BRA"]
