"""Memory-ordering and clock intrinsics for numba, built over llvmlite's IR builder.

Numba has no atomics API (numba issue #2988), so these are small ``@intrinsic``s.

Ordering contract (the rule every caller follows):

* A **store_release** must be paired with a **load_acquire** of the same word by the other
  party. Everything the writer stored *before* the release store is visible to a reader
  *after* its acquire load returns the released value.
* Producer side of a ring: write the record fields, then ``store_release(head)``.
  Consumer side: ``load_acquire(head)``, read the records, then ``store_release(tail)``.
* Plain numpy loads are **not** safe for polling shared memory: LLVM may hoist a plain
  load out of a loop and spin on a register forever. Poll only through ``load_acquire``.
* ``fence_seq_cst`` is the only StoreLoad barrier (``lock or`` on x86); it is needed only
  for Dekker-style handshakes such as the park/wake flag.

x86-64 is TSO: acquire loads and release stores compile to plain ``mov``s and the fences
other than seq_cst cost nothing at run time, but they still stop the *compiler* from
reordering. On aarch64 the same IR emits ``ldar``/``stlr``/``dmb``, so the code stays correct.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")

# Register clock_gettime so jitted code (and numba's on-disk cache) resolves it in any process.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
llvm_binding.add_symbol("clock_gettime", ctypes.cast(_libc.clock_gettime, ctypes.c_void_p).value)
llvm_binding.add_symbol("sched_yield", ctypes.cast(_libc.sched_yield, ctypes.c_void_p).value)
_CLOCK_MONOTONIC = 1


def _element_ptr(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx], wraparound=False)


def _check_word_array(arr):
    if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.dtype not in (types.uint64, types.int64):
        raise TypeError("expected a 1-D uint64 or int64 array, got %s" % (arr,))


@intrinsic
def load_acquire(typingctx, arr, idx):
    """Load ``arr[idx]`` (u64/i64) with acquire ordering. Pairs with ``store_release``."""
    _check_word_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return arr.dtype(arr, types.intp), codegen


@intrinsic
def store_release(typingctx, arr, idx, value):
    """Store ``value`` into ``arr[idx]`` (u64/i64) with release ordering."""
    _check_word_array(arr)
    if not arr.mutable:
        raise TypeError("store_release on a read-only array")

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        val = context.cast(builder, args[2], sig.args[2], sig.args[0].dtype)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, arr.dtype), codegen


@intrinsic
def load_relaxed(typingctx, arr, idx):
    """Load ``arr[idx]`` atomically with no ordering: a value that is never hoisted or torn."""
    _check_word_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "monotonic", 8)

    return arr.dtype(arr, types.intp), codegen


def _fence(ordering, scope=""):
    @intrinsic
    def fence(typingctx):
        def codegen(context, builder, sig, args):
            builder.fence(ordering, scope) if scope else builder.fence(ordering)
            return context.get_dummy_value()

        return types.void(), codegen

    return fence


#: Later loads and stores stay after earlier loads (pairs with a release on the other side).
fence_acquire = _fence("acquire")
#: Earlier loads and stores stay before later stores.
fence_release = _fence("release")
#: Full barrier including StoreLoad (``lock or`` on x86). Costs ~20 ns.
fence_seq_cst = _fence("seq_cst")
#: Compiler-only barrier: no instruction emitted, no reordering across it by LLVM.
compiler_fence = _fence("seq_cst", "singlethread")


@intrinsic
def cpu_pause(typingctx):
    """Spin-loop hint (x86 ``pause``): saves power and frees the SMT sibling while spinning."""

    def codegen(context, builder, sig, args):
        if _IS_X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst", "singlethread")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def monotonic_ns(typingctx):
    """CLOCK_MONOTONIC in ns through the vDSO (~21 ns); same clock as ``time.perf_counter_ns()``."""

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        ts_t = ir.LiteralStructType([i64, i64])
        ts = cgutils.alloca_once(builder, ts_t)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ts_t.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        builder.call(fn, [ir.Constant(ir.IntType(32), _CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return types.int64(), codegen


@intrinsic
def sched_yield(typingctx):
    """``sched_yield()`` from jitted code: hand the CPU to the next runnable task (~0.3-0.5 µs)."""

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen
