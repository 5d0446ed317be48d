# Multi-rank tests of the sharded ragged decode (issue 7).

# Ranks as threads of one process (tests/sharding_thread_comm.h): the CPU cases, and on one GPU
# the device data paths of several ranks, which NCCL cannot put on one GPU.
# Set-up shared by these tests and tests/reliability_fault_test.cc: mesh shapes, a rank's shards of
# a global problem, the reference restricted to a rank's output box.
add_library(ragged_sharding_test_util STATIC ${CMAKE_CURRENT_LIST_DIR}/sharding_test_util.cc)
target_link_libraries(ragged_sharding_test_util PUBLIC ragged_test_util)

ragged_test(sharding_threads_test sharding_threads_test.cc)
target_link_libraries(sharding_threads_test PRIVATE ragged_sharding_test_util)
if(RAGGED_WITH_CUDA)
  ragged_test(sharding_threads_gpu_test sharding_threads_test.cc LABELS gpu)
  target_link_libraries(sharding_threads_gpu_test PRIVATE ragged_sharding_test_util)
  target_compile_definitions(sharding_threads_gpu_test PRIVATE RAGGED_THREADS_TEST_GPU=1)
endif()

# Under mpirun: one binary per backend; each rank count runs every mesh of that size inside one
# mpirun.
if(NOT RAGGED_WITH_MPI OR NOT TARGET ragged_comm_test_main)
  return()
endif()

# CPU ranks over MPI: 1, 2, 4 and 8 ranks (oversubscribed on small machines).
ragged_mpi_test_binary(sharding_mpi_test sharding_mpi_test.cc)
target_link_libraries(sharding_mpi_test PRIVATE ragged_comm_test_main ragged_sharding_test_util
                      GTest::gmock)
foreach(np 1 2 4 8)
  ragged_add_mpi_run(sharding_mpi_test_np${np} sharding_mpi_test ${np} TIMEOUT 300)
endforeach()

# One rank per GPU over NCCL: 1 and 2 ranks; skips (on every rank) where GPUs are fewer.
if(RAGGED_WITH_CUDA)
  ragged_mpi_test_binary(sharding_gpu_test sharding_gpu_test.cc)
  target_link_libraries(sharding_gpu_test PRIVATE ragged_comm_test_main ragged_sharding_test_util
                        GTest::gmock)
  foreach(np 1 2)
    ragged_add_mpi_run(sharding_gpu_test_np${np} sharding_gpu_test ${np} TIMEOUT 300 LABELS gpu)
  endforeach()
endif()
