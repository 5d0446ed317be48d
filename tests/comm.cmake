# Multi-rank tests of the communicators and the bootstrap (issue 6), run under mpirun.
if(NOT RAGGED_WITH_MPI)
  return()
endif()

# main() for multi-rank GoogleTest binaries: starts MPI, rank-aware output.
add_library(ragged_comm_test_main STATIC comm_test_main.cc)
target_link_libraries(ragged_comm_test_main PUBLIC ragged GTest::gtest)

# Collectives, splits, ownership, bootstrap: 1, 2 and 4 ranks (oversubscribed on small machines).
ragged_mpi_test_binary(comm_mpi_test comm_mpi_test.cc)
target_link_libraries(comm_mpi_test PRIVATE ragged_comm_test_main)
foreach(np 1 2 4)
  ragged_add_mpi_run(comm_mpi_test_np${np} comm_mpi_test ${np} TIMEOUT 180)
endforeach()

# Faults: a rank that never arrives (it skips the collective and stays alive). 2 and 4 ranks.
ragged_mpi_test_binary(comm_fault_test comm_fault_test.cc)
target_link_libraries(comm_fault_test PRIVATE ragged_comm_test_main)
foreach(np 2 4)
  ragged_add_mpi_run(comm_fault_test_np${np} comm_fault_test ${np} TIMEOUT 120 LABELS fault)
endforeach()

# Faults: a rank that really dies. --enable-recovery keeps mpirun from killing the survivors;
# each run holds one case, as the case ends a rank.
ragged_mpi_test_binary(comm_exit_test comm_exit_test.cc)
target_link_libraries(comm_exit_test PRIVATE ragged_comm_test_main)
ragged_add_mpi_run(comm_exit_test_np2_exit comm_exit_test 2 TIMEOUT 60 LABELS fault
                   MPIEXEC_ARGS --enable-recovery ARGS --gtest_filter=*RankDiesTest*/Exit)
ragged_add_mpi_run(comm_exit_test_np4_kill comm_exit_test 4 TIMEOUT 60 LABELS fault
                   MPIEXEC_ARGS --enable-recovery ARGS --gtest_filter=*RankDiesTest*/Kill)

# NCCL under mpirun, one rank per GPU, with 1, 2 and 4 ranks. Without GPUs it checks that the
# NCCL backend is refused on every rank; with fewer GPUs than ranks, that the shared GPU is named
# before NCCL init; with a GPU per rank, the MPI-bootstrapped communicator's collectives, splits, a
# borrowed ncclComm_t and (2+ ranks) an absent peer. So a 1-GPU machine runs np1 fully and np2/np4
# as the shared-GPU check.
if(RAGGED_WITH_CUDA)
  ragged_mpi_test_binary(comm_nccl_test comm_nccl_test.cc)
  target_link_libraries(comm_nccl_test PRIVATE ragged_comm_test_main)
  foreach(np 1 2 4)
    ragged_add_mpi_run(comm_nccl_test_np${np} comm_nccl_test ${np} TIMEOUT 300 LABELS gpu)
  endforeach()
endif()
