# Read by llama-cpp-python's build (the Makefile's LLAMA_CMAKE_ARGS passes it as
# CMAKE_PROJECT_llama.cpp_INCLUDE, so CMake runs it right after llama.cpp's own project() call).
#
# llama-cpp-python's Python bindings load libllama and ggml only, but its CMakeLists forces llama.cpp's
# `common` library on, for the multimodal helpers that LLAVA_BUILD=OFF leaves out. Measured on 2 cores
# (user + system CPU time of `pip wheel`): 8.9 CPU-minutes as shipped, 8.5 with CMAKE_UNITY_BUILD alone
# (common's sources do not compile as one unit, so it stays out of it), 3.9 without common and with
# CMAKE_UNITY_BUILD, the Makefile's choice. The wheel is the same minus libllama-common.so, which
# nothing in the package loads.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
