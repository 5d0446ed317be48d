# gpu_bench: the CUDA backend on the GPU shapes of BENCHMARKS.md (run by hand; built in CI).
# It checks sampled rows against the reference with the test helpers, so it needs the tests.
if(TARGET ragged_test_util)
  find_package(nlohmann_json 3 REQUIRED)
  add_executable(gpu_bench ${CMAKE_CURRENT_LIST_DIR}/gpu_bench.cc
                           ${CMAKE_CURRENT_LIST_DIR}/gpu_bench_kernels.cu)
  target_link_libraries(gpu_bench PRIVATE ragged ragged_test_util nlohmann_json::nlohmann_json)
else()
  message(STATUS "gpu_bench is not built: it needs RAGGED_BUILD_TESTS (the reference helpers)")
endif()
