# Collective benchmark (issue 6): nccl-tests-style sweep over the MPI or NCCL communicator.
if(NOT RAGGED_WITH_MPI)
  return()
endif()
find_package(absl REQUIRED COMPONENTS flags flags_parse flags_usage)
add_executable(comm_bench comm_bench.cc)
target_link_libraries(comm_bench PRIVATE ragged absl::flags absl::flags_parse absl::flags_usage)

# A seconds-long smoke run keeps the benchmark from rotting: small sizes, results checked (exit 1
# on a wrong element). Timings are not checked.
if(RAGGED_BUILD_TESTS)
  ragged_add_mpi_run(comm_bench_smoke_np2 comm_bench 2 TIMEOUT 60 LABELS bench
                     ARGS --max_bytes=256K --step_factor=4 --warmup=1 --iters=2 --dtype=bf16)
endif()
