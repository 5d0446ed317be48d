# CPU backend sources (included from kernels/CMakeLists.txt).
target_sources(ragged PRIVATE ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.cc)
