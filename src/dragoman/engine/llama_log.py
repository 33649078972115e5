"""llama.cpp's own log, silenced: it prints notices (such as `llama_kv_cache_iswa`) on standard
error for every context and model load; the engine reports what matters in its own log."""

from __future__ import annotations

import ctypes


def silence_llama_log() -> None:
    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def _quiet(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    # Kept alive on the module: llama.cpp holds the pointer.
    globals()["_LOG_CALLBACK"] = _quiet
    llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
