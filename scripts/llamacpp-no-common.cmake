# Included by CMake right after llama.cpp's own project() call (the set-up passes it as
# CMAKE_PROJECT_llama.cpp_INCLUDE). llama-cpp-python forces llama.cpp's "common" library
# on, but the Python bindings never load it: they load libllama, libggml* and, for vision,
# libmtmd, none of which links it. Switching it off here, after that forced setting and
# before llama.cpp reads it, skips compiling common, its HTTP client and its JSON/Jinja
# chat parsers. See docs/design/install.md.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
