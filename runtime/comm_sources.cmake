# Communicators and the process bootstrap (issue 6). Included from runtime/CMakeLists.txt.
target_sources(ragged PRIVATE communicator.cc)
if(RAGGED_WITH_MPI)
  target_sources(ragged PRIVATE mpi_communicator.cc bootstrap.cc)
endif()
if(RAGGED_WITH_CUDA)
  target_sources(ragged PRIVATE nccl_communicator.cc)
endif()

if(RAGGED_BUILD_TESTS)
  ragged_test(communicator_test communicator_test.cc)
  if(RAGGED_WITH_CUDA)
    # One process, one or more GPUs, no MPI: skips (with the reason) where no GPU is visible.
    ragged_test(nccl_communicator_test nccl_communicator_test.cc LABELS gpu)
  endif()
endif()
