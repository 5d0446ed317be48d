# CUDA sources of the kernels (included from kernels/CMakeLists.txt when RAGGED_WITH_CUDA).
target_sources(ragged PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cu)
