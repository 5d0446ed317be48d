# CUDA sources of the kernels and their GPU tests (included from kernels/CMakeLists.txt when
# RAGGED_WITH_CUDA). The decode kernels are instantiated one dtype per file so that the build
# compiles them in parallel.
target_sources(ragged PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cu
  ${CMAKE_CURRENT_LIST_DIR}/merge_cuda.cu
  ${CMAKE_CURRENT_LIST_DIR}/decode_f16.cu
  ${CMAKE_CURRENT_LIST_DIR}/decode_bf16.cu
  ${CMAKE_CURRENT_LIST_DIR}/decode_f32.cu)

if(RAGGED_BUILD_TESTS)
  # ragged_test_util is defined after this fragment is included: link it by name.
  ragged_test(cuda_decode_test ${CMAKE_CURRENT_LIST_DIR}/cuda_decode_test.cc
              ${CMAKE_CURRENT_LIST_DIR}/cuda_test_kernels.cu LABELS gpu)
  target_link_libraries(cuda_decode_test PRIVATE ragged_test_util)
  ragged_test(cuda_merge_test ${CMAKE_CURRENT_LIST_DIR}/cuda_merge_test.cc LABELS gpu)
  target_link_libraries(cuda_merge_test PRIVATE ragged_test_util)
endif()
