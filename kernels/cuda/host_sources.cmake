# Host-only sources of the CUDA backend that build in every configuration (with or without CUDA):
# the kernel config, the heuristic, the autotune policy and its cache, and their CPU tests.
target_sources(ragged PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../kernel_config.cc
  ${CMAKE_CURRENT_LIST_DIR}/../autotune.cc)
find_package(nlohmann_json REQUIRED)
# Header-only, used by autotune.cc alone: not part of the installed interface.
target_link_libraries(ragged PRIVATE $<BUILD_INTERFACE:nlohmann_json::nlohmann_json>)

if(RAGGED_BUILD_TESTS)
  ragged_test(autotune_test ${CMAKE_CURRENT_LIST_DIR}/../autotune_test.cc)
endif()
