# Included right after llama.cpp's own project() call (CMAKE_PROJECT_llama.cpp_INCLUDE, set in the
# Makefile): llama-cpp-python forces llama.cpp's "common" library on, which its Python package never
# loads (it binds libllama and libggml only), and with it cpp-httplib. Building neither saves most of
# the compile time of `make setup`.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama.cpp: build the common utils library" FORCE)
