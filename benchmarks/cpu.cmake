# cpu_bench: the CPU backend on the CPU shapes of BENCHMARKS.md (run by hand; built in CI).
find_package(nlohmann_json 3 QUIET)
if(nlohmann_json_FOUND)
  add_executable(cpu_bench ${CMAKE_CURRENT_LIST_DIR}/cpu_bench.cc)
  target_link_libraries(cpu_bench PRIVATE ragged nlohmann_json::nlohmann_json OpenMP::OpenMP_CXX)
else()
  message(WARNING "cpu_bench is not built: nlohmann_json (Debian nlohmann-json3-dev) not found")
endif()
